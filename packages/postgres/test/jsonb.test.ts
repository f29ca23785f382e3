import { encodeRecord, SnapshotError } from '@cohort/core'
import { afterEach, describe, expect, test } from 'vitest'
import {
  expectSettledRecordsFinal,
  makeAgentRecord,
  makeRunRecord,
} from '../../../tests/support/run-store-conformance.js'
import { type PostgresStore, postgresStore } from '../src/index.js'
import { schemaVersion } from '../src/migrations.js'
import { admin, connectionString, dropSchema, enabled, freshSchema } from './pg-harness.js'

const suite = enabled ? describe : describe.skip

/** The tables as @cohort/postgres created them while it kept records as text (schema version 1). */
function textSchema(q: string): string[] {
  return [
    `CREATE SCHEMA ${q}`,
    `CREATE TABLE ${q}.schema_migrations (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`,
    `INSERT INTO ${q}.schema_migrations (version) VALUES (1)`,
    `CREATE TABLE ${q}.runs (id text PRIMARY KEY, status text NOT NULL, agent text NOT NULL,
       created_at bigint NOT NULL, updated_at bigint NOT NULL, record text NOT NULL)`,
    `CREATE INDEX runs_status_created_at ON ${q}.runs (status, created_at DESC)`,
    `CREATE INDEX runs_created_at ON ${q}.runs (created_at DESC)`,
    `CREATE TABLE ${q}.agents (run_id text NOT NULL, id text NOT NULL, updated_at bigint NOT NULL,
       record text NOT NULL, PRIMARY KEY (run_id, id))`,
    `CREATE INDEX agents_run_id ON ${q}.agents (run_id)`,
  ]
}

const rich = { when: new Date(1_700_000_000_123), tags: new Set(['a', 'b']), big: 12345678901234567890n }

/** An agent whose history holds what jsonb cannot: a NUL character and a lone surrogate. */
function awkwardAgent(runId: string) {
  const record = makeAgentRecord(runId, 'lead.odd', { status: 'completed' })
  record.snapshot.context.messages.push({ role: 'user', content: 'nul \u0000 and lone \ud800 here' })
  return record
}

suite('postgresStore keeps records as jsonb', () => {
  const schemas: string[] = []
  const stores: PostgresStore[] = []
  const open = (schema: string) => {
    if (!schemas.includes(schema)) schemas.push(schema)
    const store = postgresStore({ connectionString, schema })
    stores.push(store)
    return store
  }
  afterEach(async () => {
    await Promise.all(stores.splice(0).map((store) => store.close()))
    await Promise.all(schemas.splice(0).map(dropSchema))
  })

  test("PostgreSQL holds records as jsonb: record->>'status' answers in psql, and an index serves which agents failed in the last hour", async () => {
    const schema = freshSchema()
    const store = open(schema)
    const now = Date.now()
    await store.saveRun(makeRunRecord('j1', { status: 'failed', result: rich }))
    const agents = [
      makeAgentRecord('j1', 'lead', { status: 'failed', updatedAt: now - 10 * 60_000 }),
      makeAgentRecord('j1', 'lead.a', { status: 'failed', updatedAt: now - 2 * 3_600_000 }),
      makeAgentRecord('j1', 'lead.b', { status: 'completed', updatedAt: now }),
    ]
    for (const agent of agents) await store.saveAgent('j1', agent)

    const run = await admin!.query(
      `SELECT record->>'status' AS status, record->'result'->'tags' AS tags FROM "${schema}".runs`,
    )
    expect(run.rows).toEqual([{ status: 'failed', tags: ['a', 'b'] }])
    const failedLastHour = `SELECT run_id, id, record->'snapshot'->'context'->>'task' AS task FROM "${schema}".agents
      WHERE record->>'status' = 'failed' AND updated_at > (extract(epoch FROM now() - interval '1 hour') * 1000)::bigint`
    expect((await admin!.query(failedLastHour)).rows).toEqual([{ run_id: 'j1', id: 'lead', task: 'a task' }])

    // With sequential scans ruled out, the planner can answer it from the index (a table this small is scanned otherwise).
    const client = await admin!.connect()
    try {
      await client.query('BEGIN')
      await client.query('SET LOCAL enable_seqscan = off')
      const plan = await client.query(`EXPLAIN ${failedLastHour}`)
      expect(plan.rows.map((row) => row['QUERY PLAN']).join('\n')).toContain('agents_status_updated_at')
    } finally {
      await client.query('ROLLBACK')
      client.release()
    }

    // Values JSON cannot hold still come back as they were.
    expect((await store.loadRun('j1'))?.run.result).toEqual(rich)
    expect((await store.loadRun('j1'))?.agents.sort((a, b) => a.id.localeCompare(b.id))).toEqual(agents)
  })

  test('a record jsonb cannot hold (a NUL character, a lone surrogate) round-trips exactly, with a copy for queries', async () => {
    const schema = freshSchema()
    const store = open(schema)
    await store.saveRun(makeRunRecord('j2'))
    const odd = awkwardAgent('j2')
    await store.saveAgent('j2', odd)
    expect(await store.loadAgent('j2', 'lead.odd')).toEqual(odd)
    const { rows } = await admin!.query(
      `SELECT record->>'status' AS status, record->'snapshot'->'context'->'messages'->4->>'content' AS content
       FROM "${schema}".agents`,
    )
    expect(rows).toEqual([{ status: 'completed', content: 'nul \ufffd and lone \ufffd here' }])
  })

  test('a record stored as completed or failed is final: a later write of the agent (a worker that lost its job) changes neither it nor its history', async () => {
    await expectSettledRecordsFinal(open(freshSchema()), 'f1')
  })

  test('a batch (saveAgents) keeps each record as saveAgent does: plain, rich (superjson) and what jsonb cannot hold, the last of an agent winning', async () => {
    const schema = freshSchema()
    const store = open(schema)
    await store.saveRun(makeRunRecord('j3'))
    const plain = makeAgentRecord('j3', 'lead', { status: 'running' })
    const richAgent = makeAgentRecord('j3', 'lead.rich', { status: 'completed' })
    richAgent.snapshot.context.result = rich
    const odd = awkwardAgent('j3')
    const later = makeAgentRecord('j3', 'lead', { status: 'completed', updatedAt: plain.updatedAt + 1 })
    await store.saveAgents!('j3', [plain, richAgent, odd, later])
    const loaded = (await store.loadRun('j3'))?.agents.sort((a, b) => a.id.localeCompare(b.id))
    expect(loaded).toEqual([later, odd, richAgent].sort((a, b) => a.id.localeCompare(b.id)))
    const { rows } = await admin!.query(
      `SELECT id, record->>'status' AS status, record_text IS NOT NULL AS exact FROM "${schema}".agents ORDER BY id`,
    )
    expect(rows).toEqual([
      { id: 'lead', status: 'completed', exact: false },
      { id: 'lead.odd', status: 'completed', exact: true },
      { id: 'lead.rich', status: 'completed', exact: false },
    ])
  })

  test('a schema whose records are text (its first version) is migrated in place: every record loads as it was stored', async () => {
    const schema = freshSchema()
    schemas.push(schema)
    const q = `"${schema}"`
    for (const sql of textSchema(q)) await admin!.query(sql)
    const runs = [
      makeRunRecord('t1', { status: 'completed', result: rich, createdAt: 1 }),
      makeRunRecord('t2', {
        status: 'failed',
        error: { name: 'E', code: 'X', message: 'boom' },
        createdAt: 2,
      }),
    ]
    const agents = [makeAgentRecord('t1', 'lead', { status: 'completed' }), awkwardAgent('t1')]
    // As the text version wrote them: the codec's text in `record`.
    for (const run of runs) {
      await admin!.query(
        `INSERT INTO ${q}.runs (id, status, agent, created_at, updated_at, record) VALUES ($1, $2, $3, $4, $5, $6)`,
        [run.id, run.status, run.agent, run.createdAt, run.updatedAt, encodeRecord(run)],
      )
    }
    for (const agent of agents) {
      await admin!.query(`INSERT INTO ${q}.agents (run_id, id, updated_at, record) VALUES ($1, $2, $3, $4)`, [
        agent.runId,
        agent.id,
        agent.updatedAt,
        encodeRecord(agent),
      ])
    }
    await admin!.query(
      `INSERT INTO ${q}.agents (run_id, id, updated_at, record) VALUES ('t2', 'lead', 1, 'garbage{')`,
    )

    const store = open(schema)
    await store.migrate()
    const versions = await admin!.query(`SELECT max(version) AS v FROM ${q}.schema_migrations`)
    expect(versions.rows[0].v).toBe(schemaVersion)
    const t1 = await store.loadRun('t1')
    expect(t1?.run).toEqual(runs[0])
    expect(t1?.agents.sort((a, b) => a.id.localeCompare(b.id))).toEqual(agents)
    expect((await store.listRuns()).map((run) => run.id)).toEqual(['t2', 't1'])
    // A row that did not decode before the migration still names itself when it is read.
    const broken = await store.loadRun('t2').catch((error: unknown) => error)
    expect(broken).toBeInstanceOf(SnapshotError)
    expect((broken as SnapshotError).source).toBe(`postgres:${schema}.agents/t2/lead`)

    const { rows } = await admin!.query(
      `SELECT run_id, id, record->>'status' AS status, record_text IS NOT NULL AS exact_text
       FROM ${q}.agents ORDER BY run_id, id`,
    )
    expect(rows).toEqual([
      { run_id: 't1', id: 'lead', status: 'completed', exact_text: false },
      { run_id: 't1', id: 'lead.odd', status: 'completed', exact_text: true },
      { run_id: 't2', id: 'lead', status: null, exact_text: true },
    ])
    const types = await admin!.query(
      `SELECT table_name, data_type FROM information_schema.columns
       WHERE table_schema = $1 AND column_name = 'record' ORDER BY table_name`,
      [schema],
    )
    expect(types.rows).toEqual([
      { table_name: 'agents', data_type: 'jsonb' },
      { table_name: 'runs', data_type: 'jsonb' },
    ])
  })

  test('a record a process of the text version writes after the migration still loads', async () => {
    // Such a process puts the codec's text in `record`, which jsonb takes as it is.
    const schema = freshSchema()
    const store = open(schema)
    const run = makeRunRecord('t3', { status: 'completed', result: rich })
    await store.saveRun(run)
    await admin!.query(`UPDATE "${schema}".runs SET record = $1, meta = NULL WHERE id = 't3'`, [
      encodeRecord(run),
    ])
    const agent = makeAgentRecord('t3', 'lead')
    await admin!.query(
      `INSERT INTO "${schema}".agents (run_id, id, updated_at, record) VALUES ('t3', 'lead', 1, $1)`,
      [encodeRecord(agent)],
    )
    expect(await store.loadRun('t3')).toEqual({ run, agents: [agent] })
  })
})
