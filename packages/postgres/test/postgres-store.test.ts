import {
  createRuntime,
  defineAgent,
  defineTool,
  encodeRecord,
  InvalidInputError,
  type KeepingStore,
  type Run,
  SnapshotError,
  StoreError,
  scriptedModel,
} from '@cohort/core'
import pg from 'pg'
import { afterEach, describe, expect, test } from 'vitest'
import { z } from 'zod'
import {
  describeRunStore,
  makeAgentRecord,
  makeLongAgentRecord,
  makeRunRecord,
} from '../../../tests/support/run-store-conformance.js'
import { type PostgresStore, postgresStore } from '../src/index.js'
import { schemaVersion } from '../src/migrations.js'
import {
  admin,
  connectionString,
  dropSchema,
  enabled,
  freshSchema,
  redacted,
  unreachable,
} from './pg-harness.js'

const suite = enabled ? describe : describe.skip

/** `promise` settled, or a failure naming `what` once `ms` have passed without it. */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} still pending after ${ms} ms`)), ms)
  })
  return Promise.race([promise, late]).finally(() => clearTimeout(timer))
}

suite('postgres reachability', () => {
  test('PostgreSQL answers', () => {
    expect(unreachable, `PostgreSQL at ${redacted(connectionString)}`).toBeUndefined()
  })
})

suite('shared conformance', () => {
  describeRunStore('postgresStore', async (options) => {
    const schema = freshSchema()
    return {
      store: postgresStore({ connectionString, schema, ...options }),
      cleanup: () => dropSchema(schema),
    }
  })
})

suite('postgresStore', () => {
  const schemas: string[] = []
  const stores: PostgresStore[] = []

  const open = (schema = freshSchema()) => {
    if (!schemas.includes(schema)) schemas.push(schema)
    const store = postgresStore({ connectionString, schema })
    stores.push(store)
    return { store, schema }
  }

  afterEach(async () => {
    await Promise.all(stores.splice(0).map((store) => store.close()))
    await Promise.all(schemas.splice(0).map(dropSchema))
  })

  test('listRuns skips an unreadable run and still fills its page', async () => {
    const { store, schema } = open()
    for (const [i, id] of ['old', 'mid', 'new'].entries()) {
      await store.saveRun(makeRunRecord(id, { createdAt: 1_000 + i, updatedAt: 1_000 + i }))
    }
    await admin!.query(`UPDATE "${schema}".runs SET record = 'null'::jsonb WHERE id = 'new'`)
    expect((await store.listRuns({ limit: 1 })).map((run) => run.id)).toEqual(['mid'])
    expect((await store.listRuns({ limit: 2 })).map((run) => run.id)).toEqual(['mid', 'old'])
    await expect(store.loadRun('new')).rejects.toThrow(/the record is empty/)
  })

  test('listRuns filters, orders and pages in SQL, by the columns', async () => {
    const { store, schema } = open()
    const statuses = ['running', 'completed', 'failed', 'cancelled'] as const
    for (let i = 0; i < 30; i++) {
      const createdAt = 5_000 + i
      await store.saveRun(
        makeRunRecord(`run-${String(i).padStart(2, '0')}`, {
          status: statuses[i % 4]!,
          createdAt,
          updatedAt: createdAt,
        }),
      )
    }
    // Columns out of step with the records prove the filtering is done by SQL, not after decoding.
    await admin!.query(`UPDATE "${schema}".runs SET created_at = 9000, status = 'failed' WHERE id = 'run-00'`)

    const newest = await store.listRuns({ limit: 3 })
    expect(newest.map((run) => run.id)).toEqual(['run-00', 'run-29', 'run-28'])

    const pages: string[] = []
    for (let offset = 0; ; offset += 7) {
      const page = await store.listRuns({ limit: 7, offset })
      pages.push(...page.map((run) => run.id))
      if (page.length < 7) break
    }
    expect(pages).toHaveLength(30)
    expect(new Set(pages).size).toBe(30)

    const failed = await store.listRuns({ status: 'failed' })
    expect(failed.map((run) => run.id)).toEqual([
      'run-00',
      'run-26',
      'run-22',
      'run-18',
      'run-14',
      'run-10',
      'run-06',
      'run-02',
    ])
    const some = await store.listRuns({ status: ['completed', 'cancelled'], since: 5_010, until: 5_020 })
    expect(some.map((run) => run.id)).toEqual(['run-19', 'run-17', 'run-15', 'run-13', 'run-11'])
    const paged = await store.listRuns({
      status: ['completed', 'cancelled'],
      since: 5_010,
      limit: 2,
      offset: 1,
    })
    expect(paged.map((run) => run.id)).toEqual(['run-27', 'run-25'])
    expect(await store.listRuns({ status: [] })).toEqual([])
    await expect(store.listRuns({ limit: -1 })).rejects.toBeInstanceOf(InvalidInputError)
  })

  test('equal creation times are ordered by id, as the other stores order them', async () => {
    const { store } = open()
    for (const id of ['b', 'B', 'a_1', 'a-1', 'A']) await store.saveRun(makeRunRecord(id, { createdAt: 1 }))
    expect((await store.listRuns()).map((run) => run.id)).toEqual(['A', 'B', 'a-1', 'a_1', 'b'])
  })

  test('a corrupted agent row gives a SnapshotError naming the row and field', async () => {
    const { store, schema } = open()
    await store.saveRun(makeRunRecord('c1'))
    await store.saveAgent('c1', makeAgentRecord('c1', 'lead'))
    await store.saveAgent('c1', makeAgentRecord('c1', 'lead.a'))

    // A record jsonb cannot hold is kept as the codec's text, which a row can hold broken.
    await admin!.query(
      `UPDATE "${schema}".agents SET record_text = 'garbage{' WHERE run_id = 'c1' AND id = 'lead.a'`,
    )
    const garbled = await store.loadRun('c1').catch((error: unknown) => error)
    expect(garbled).toBeInstanceOf(SnapshotError)
    expect((garbled as SnapshotError).source).toBe(`postgres:${schema}.agents/c1/lead.a`)
    await expect(store.loadAgent('c1', 'lead.a')).rejects.toThrow(`${schema}.agents/c1/lead.a`)

    await admin!.query(
      `UPDATE "${schema}".agents SET record = jsonb_set(record, '{depth}', '-1'), record_text = NULL
       WHERE run_id = 'c1' AND id = 'lead.a'`,
    )
    const wrongField = await store.loadRun('c1').catch((error: unknown) => error)
    expect(wrongField).toBeInstanceOf(SnapshotError)
    expect((wrongField as SnapshotError).field).toBe('depth')
    expect((wrongField as SnapshotError).message).toContain('agents/c1/lead.a')
    expect(await store.loadAgent('c1', 'lead')).toMatchObject({ id: 'lead' })
  })

  test("a row edited to hold another run's or agent's record is a SnapshotError naming the row, and is left as it is", async () => {
    const { store, schema } = open()
    await store.saveRun(makeRunRecord('f1'))
    await store.saveRun(makeRunRecord('f2'))
    await store.saveAgent('f1', makeAgentRecord('f1', 'lead'))
    await store.saveAgent('f1', makeAgentRecord('f1', 'lead.a'))
    const edit = (table: string, where: string, field: string, value: string) =>
      admin!.query(
        `UPDATE "${schema}".${table} SET record = jsonb_set(record, '{${field}}', $1) WHERE ${where}`,
        [JSON.stringify(value)],
      )

    await edit('runs', "id = 'f1'", 'id', 'f2')
    for (const read of [store.loadRun('f1'), store.loadRunRecord('f1')])
      await expect(read).rejects.toThrow(
        `postgres:${schema}.runs/f1: field "id": "f2"; expected "f1", the run its row is keyed by`,
      )
    expect((await store.listRuns()).map((run) => run.id)).toEqual(['f2'])
    await edit('runs', "id = 'f1'", 'id', 'f1')

    await edit('agents', "run_id = 'f1' AND id = 'lead.a'", 'id', 'lead')
    const twin = `postgres:${schema}.agents/f1/lead.a: field "id": "lead"; expected "lead.a", the agent its row is keyed by`
    await expect(store.loadRun('f1')).rejects.toThrow(twin)
    await expect(store.loadAgent('f1', 'lead.a')).rejects.toThrow(twin)
    await edit('agents', "run_id = 'f1' AND id = 'lead.a'", 'id', 'lead.a')

    await edit('agents', "run_id = 'f1' AND id = 'lead.a'", 'runId', 'f2')
    const foreign = `postgres:${schema}.agents/f1/lead.a: field "runId": "f2"; expected "f1", the run its row is keyed by`
    await expect(store.loadRun('f1')).rejects.toThrow(foreign)
    await expect(store.loadAgent('f1', 'lead.a')).rejects.toThrow(foreign)
    // Nothing was rewritten or removed by the failed reads.
    const rows = await admin!.query(`SELECT id, record->>'runId' AS run FROM "${schema}".agents ORDER BY id`)
    expect(rows.rows).toEqual([
      { id: 'lead', run: 'f1' },
      { id: 'lead.a', run: 'f2' },
    ])
  })

  test('two runtimes, each with its own pool, resuming one stored run at once: one runs it, the other is refused, and its tool runs once', async () => {
    const { store, schema } = open()
    let calls = 0
    const step = defineTool({
      name: 'step',
      description: 'a step with a side effect',
      parameters: z.object({}),
      execute: () => {
        calls++
        return 'stepped'
      },
    })
    const solo = defineAgent({ name: 'solo', instructions: '', tools: [step] })
    const model = scriptedModel({
      solo: [
        { action: 'call_tool', tool: 'step', args: {} },
        { action: 'finish', result: 'done' },
      ],
    })
    const first = createRuntime({ agents: [solo], model, store })
    const started = first.start('solo', 'go', { runId: 'both' })
    await started.detach()
    await expect(started.result).rejects.toMatchObject({ code: 'DETACHED' })
    expect(calls).toBe(0)

    const runtimes = [0, 1].map(() => createRuntime({ agents: [solo], model, store: open(schema).store }))
    const outcomes = await Promise.allSettled(runtimes.map((runtime) => runtime.resume('both')))
    const resumed = outcomes.filter((outcome) => outcome.status === 'fulfilled')
    const refused = outcomes.filter((outcome) => outcome.status === 'rejected')
    expect(resumed).toHaveLength(1)
    expect(refused).toHaveLength(1)
    expect((refused[0] as PromiseRejectedResult).reason).toMatchObject({ code: 'RUN_BUSY' })
    expect(String((refused[0] as PromiseRejectedResult).reason.message)).toMatch(/^run both is running in/)
    expect(await (resumed[0] as PromiseFulfilledResult<Run>).value.result).toBe('done')
    expect(calls).toBe(1)
  })

  test("a run whose row is gone, its agents' rows still there, is a SnapshotError; a new run is not started over them", async () => {
    const { store, schema } = open()
    await store.saveRun(makeRunRecord('gone'))
    await store.saveAgent('gone', makeAgentRecord('gone', 'lead'))
    await admin!.query(`DELETE FROM "${schema}".runs WHERE id = 'gone'`)
    const missing = `postgres:${schema}.runs/gone: the run record is missing, and the store holds its agents' records`
    await expect(store.loadRun('gone')).rejects.toThrow(missing)
    await expect(store.loadRunRecord('gone')).rejects.toThrow(missing)
    expect(await store.loadRun('never')).toBeUndefined()
    expect(await store.loadRunRecord('never')).toBeUndefined()

    const solo = defineAgent({ name: 'lead', instructions: '' })
    const runtime = createRuntime({
      agents: [solo],
      model: scriptedModel({ lead: [{ action: 'finish', result: 'new' }] }),
      store,
    })
    await expect(runtime.start('lead', 'again', { runId: 'gone' }).result).rejects.toThrow(
      /run gone already exists in the store/,
    )
    const rows = await admin!.query(`SELECT id, record->>'status' AS status FROM "${schema}".agents`)
    expect(rows.rows).toEqual([{ id: 'lead', status: 'suspended' }])
    expect((await admin!.query(`SELECT id FROM "${schema}".runs`)).rows).toEqual([])
  })

  test('a corrupted run row fails loadRun and is skipped by listRuns', async () => {
    const { store, schema } = open()
    await store.saveRun(makeRunRecord('good', { createdAt: 1 }))
    await store.saveRun(makeRunRecord('bad', { createdAt: 2 }))
    await admin!.query(`UPDATE "${schema}".runs SET record = '{}' WHERE id = 'bad'`)
    await expect(store.loadRun('bad')).rejects.toThrow(`postgres:${schema}.runs/bad`)
    expect((await store.listRuns()).map((run) => run.id)).toEqual(['good'])
  })

  test('stores migrating the same new schema at once all work', async () => {
    const schema = freshSchema()
    const many = Array.from({ length: 6 }, () => open(schema).store)
    await Promise.all(many.map((store) => store.migrate()))
    await Promise.all(many.map((store, i) => store.saveRun(makeRunRecord(`m${i}`, { createdAt: i }))))
    for (const store of many) expect(await store.listRuns()).toHaveLength(6)
    const { rows } = await admin!.query(`SELECT version FROM "${schema}".schema_migrations`)
    expect(rows.map((row) => row.version)).toEqual(Array.from({ length: schemaVersion }, (_, i) => i + 1))
  })

  test('migration is lazy and happens once per store', async () => {
    const { store, schema } = open()
    const exists = async () =>
      (await admin!.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [schema])).rowCount === 1
    expect(await exists()).toBe(false)
    expect(await store.loadRun('none')).toBeUndefined()
    expect(await exists()).toBe(true)
    await store.migrate()
    const { rows } = await admin!.query(`SELECT count(*)::int AS n FROM "${schema}".schema_migrations`)
    expect(rows[0].n).toBe(schemaVersion)
  })

  test('run ids with ".." are refused before any query', async () => {
    const { store, schema } = open()
    for (const bad of ['..', '../x', 'a..b']) {
      await expect(store.saveRun(makeRunRecord(bad))).rejects.toBeInstanceOf(InvalidInputError)
      await expect(store.loadRun(bad)).rejects.toBeInstanceOf(InvalidInputError)
      await expect(store.loadAgent(bad, 'lead')).rejects.toBeInstanceOf(InvalidInputError)
      await expect(store.loadRunRecord(bad)).rejects.toBeInstanceOf(InvalidInputError)
      await expect(store.deleteRun(bad)).rejects.toBeInstanceOf(InvalidInputError)
    }
    const { rowCount } = await admin!.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [schema])
    expect(rowCount).toBe(0)
  })

  test('deleteRun and prune remove only those runs, their agents and their histories', async () => {
    const { store, schema } = open()
    for (const id of ['d1', 'd2', 'd3']) {
      await store.saveRun(makeRunRecord(id, { status: id === 'd3' ? 'completed' : 'running' }))
      await store.saveAgent(id, makeLongAgentRecord(id, 'lead', 40))
    }
    await store.deleteRun('d1')
    expect(await store.loadAgent('d1', 'lead')).toBeUndefined()
    expect(await store.loadRunRecord('d1')).toBeUndefined()
    expect((await store.loadRun('d2'))?.agents).toEqual([makeLongAgentRecord('d2', 'lead', 40)])
    expect(await store.prune({ maxFinishedRuns: 0 })).toEqual(['d3'])
    const { rows } = await admin!.query(
      `SELECT run_id, count(*)::int AS chunks FROM "${schema}".agent_history GROUP BY run_id`,
    )
    expect(rows).toEqual([{ run_id: 'd2', chunks: 2 }])
  })

  test('a write adds the chunks of history it completes and leaves the stored ones as they are; the row keeps the last messages', async () => {
    const { store, schema } = open()
    await store.saveRun(makeRunRecord('h1'))
    const long = makeLongAgentRecord('h1', 'lead', 40)
    const { messages } = long.snapshot.context
    const at = (count: number) => makeLongAgentRecord('h1', 'lead', count)
    await store.saveAgent('h1', at(20), 0)
    // Changed in the table: a write that adds to the history does not write it again.
    const changed = [{ role: 'system', content: 'changed' }, ...messages.slice(1, 16)]
    await admin!.query(`UPDATE "${schema}".agent_history SET messages = $1 WHERE chunk = 0`, [
      JSON.stringify(changed),
    ])
    await store.saveAgents!('h1', [at(40)], [20])
    const loaded = await store.loadAgent('h1', 'lead')
    expect(loaded?.snapshot.context.messages).toEqual([...changed, ...messages.slice(16)])
    const { rows } = await admin!.query(
      `SELECT jsonb_array_length(record->'snapshot'->'context'->'messages') AS own, record->>'historyLength' AS length,
         (SELECT count(*)::int FROM "${schema}".agent_history) AS chunks
       FROM "${schema}".agents WHERE run_id = 'h1'`,
    )
    expect(rows).toEqual([{ own: 8, length: '40', chunks: 2 }])
  })

  test('a row written before histories were kept apart (its messages in its record) still loads', async () => {
    const { store, schema } = open()
    await store.saveRun(makeRunRecord('old'))
    const agent = makeAgentRecord('old', 'lead')
    await store.migrate()
    await admin!.query(
      `INSERT INTO "${schema}".agents (run_id, id, updated_at, record) VALUES ('old', 'lead', 1, $1::jsonb)`,
      [encodeRecord(agent)],
    )
    expect(await store.loadAgent('old', 'lead')).toEqual(agent)
    expect((await store.loadRun('old'))?.agents).toEqual([agent])
  })

  test.each([
    ['runs', 'write of the run record'],
    ['run_claims', 'claim'],
  ])(
    'a run whose %s table another session locked fails after storeTimeoutMs; shutdown returns',
    async (table, call) => {
      const { store, schema } = open()
      await store.migrate()
      const agent = defineAgent({ name: 'solo', instructions: '' })
      const model = scriptedModel({ solo: [{ action: 'finish', result: 'done' }] })
      const runtime = createRuntime({ agents: [agent], model, store, storeTimeoutMs: 500 })
      const locker = await admin!.connect()
      try {
        await locker.query('BEGIN')
        await locker.query(`LOCK TABLE "${schema}".${table} IN ACCESS EXCLUSIVE MODE`)
        const run = runtime.start('solo', 'wait')
        const error = await within(run.result, 5_000, 'run.result').catch((e: unknown) => e)
        expect(error).toBeInstanceOf(StoreError)
        expect((error as Error).message).toBe(`store ${call} (run ${run.id}) did not finish within 500 ms`)
        await within(runtime.shutdown(), 5_000, 'runtime.shutdown()')
      } finally {
        await locker.query('ROLLBACK')
        locker.release()
      }
    },
  )

  test('claims are part of its type, as on every store of Cohort: claimRun and releaseRun need no `!`', async () => {
    const { store } = open()
    // Typed as the other stores (KeepingStore): this line type-checks only if claims are always there.
    const keeping: KeepingStore = store
    const until = Date.now() + 30_000
    expect(await keeping.claimRun('claimed', { owner: 'a', until })).toEqual({ owner: 'a', until })
    expect(await store.claimRun('claimed', { owner: 'b', until })).toEqual({ owner: 'a', until })
    await store.releaseRun('claimed', 'a')
    expect(await store.claimRun('claimed', { owner: 'b', until })).toEqual({ owner: 'b', until })
  })

  test('a pool passed in is used and left open', async () => {
    const schema = freshSchema()
    schemas.push(schema)
    const pool = new pg.Pool({ connectionString, max: 2 })
    try {
      const store = postgresStore({ pool, schema })
      await store.saveRun(makeRunRecord('p1'))
      await store.close()
      await expect(store.loadRun('p1')).rejects.toBeInstanceOf(StoreError)
      const { rows } = await pool.query(`SELECT id FROM "${schema}".runs`)
      expect(rows).toEqual([{ id: 'p1' }])
    } finally {
      await pool.end()
    }
  })
})

suite('postgresStore(url)', () => {
  test('a connection string alone makes the store, as postgresStore({ connectionString }) does', async () => {
    const store = postgresStore(connectionString)
    try {
      await store.saveRun(makeRunRecord('by-url'))
      expect((await store.loadRunRecord('by-url'))?.id).toBe('by-url')
      await store.deleteRun('by-url')
    } finally {
      await store.close()
    }
  })

  test('anything else is refused, saying what it takes', () => {
    for (const bad of [null, 42, ['postgres://x'], ' ']) {
      expect(() => postgresStore(bad as never)).toThrow(
        /postgresStore takes a connection string \(postgres:\/\/…\) or options|the connection string is empty/,
      )
    }
  })
})

describe('postgresStore without a database', () => {
  test('schema names are validated', () => {
    for (const bad of ['Bad', '1abc', 'a-b', 'x"; drop schema public', '', 'a'.repeat(64), 'pg_x']) {
      expect(() => postgresStore({ connectionString, schema: bad })).toThrow(InvalidInputError)
    }
  })

  test('a connection failure is a StoreError without the password', async () => {
    const store = postgresStore({
      connectionString: 'postgres://cohort:s3cret-pw@127.0.0.1:1/nowhere',
      connectionTimeoutMillis: 1_000,
    })
    try {
      const error = await store.saveRun(makeRunRecord('x')).catch((caught: unknown) => caught)
      expect(error).toBeInstanceOf(StoreError)
      expect((error as Error).message).toMatch(/postgres store \(cohort@127\.0\.0\.1:1\/nowhere/)
      expect((error as Error).message).not.toContain('s3cret')
      await expect(store.loadRun('../x')).rejects.toBeInstanceOf(InvalidInputError)
    } finally {
      await store.close()
    }
  })
})
