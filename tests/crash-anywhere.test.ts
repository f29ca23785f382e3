import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { createRuntime, type Durability, fileStore, memoryStore, type RunStore } from '@cohort/core'
import { postgresStore } from '@cohort/postgres'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { faultAgents, faultDatabase, faultModel, faultRuntime } from './fixtures/fault-scenario.js'
import { collect, resultLine, spawnTs } from './support/processes.js'

/** Seeds to try: 10 in the default suite, more with `pnpm test:faults` (COHORT_FAULT_SEEDS=50). */
const seeds = Number(process.env.COHORT_FAULT_SEEDS ?? 10)
/** Seeds for each other store and durability: 2 by default, a fifth as many as `seeds` with more. */
const otherSeeds = Math.max(2, Math.ceil(seeds / 5))

/** mulberry32: a small seeded generator, so a failing seed can be replayed. */
function random(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

let dir: string
let expected: unknown
let expectedAgents: number
let runMs: number

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'cohort-crash-'))
  const started = performance.now()
  const runtime = faultRuntime(path.join(dir, 'clean'))
  const run = runtime.start('lead', 'crash me', { runId: 'clean' })
  expected = await run.result
  runMs = performance.now() - started
  expectedAgents = (await runtime.store.loadRun('clean'))!.agents.length
})

afterAll(async () => {
  await rm(dir, { recursive: true, force: true })
})

describe(`crash anywhere (${seeds} seeds)`, () => {
  test('the uninterrupted run is what the crashed runs must match', () => {
    expect(expected).toMatchObject({ w1: 'lead.w1 slept 0.05', w2: 'lead.w2 slept 0.08' })
    expect((expected as { tree: string[] }).tree).toEqual(['rLL', 'rLR', 'rRL', 'rRR'])
    expect(expectedAgents).toBe(1 + 2 + 7 + 1)
  })

  test.each(Array.from({ length: seeds }, (_, i) => i + 1))(
    'seed %i: SIGKILL at a random moment, resume, same result',
    (seed) => crashAndResume(seed, path.join(dir, `seed-${seed}`), 'sync'),
  )
})

/**
 * The same on the other stores and durability: a PostgreSQL store (sync and async), and a file
 * store under 'async', whose writes trail the agents (more runs again after a kill, the same end).
 */
describe.each([
  ['postgres', 'sync'],
  ['postgres', 'async'],
  ['file', 'async'],
] as const)(`crash anywhere on a %s store, durability '%s' (${otherSeeds} seeds)`, (kind, durability) => {
  const schemas: string[] = []
  afterAll(async () => {
    if (schemas.length === 0) return
    const admin = new pg.Pool({ connectionString: faultDatabase, max: 1 })
    for (const schema of schemas) await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`)
    await admin.end()
  })
  test.each(Array.from({ length: otherSeeds }, (_, i) => i + 101))(
    'seed %i: SIGKILL at a random moment, resume, same result',
    async (seed) => {
      let where = path.join(dir, `${kind}-${durability}-${seed}`)
      if (kind === 'postgres') {
        where = `cohort_crash_${randomBytes(6).toString('hex')}`
        schemas.push(where)
      }
      await crashAndResume(seed, kind === 'postgres' ? `postgres:${where}` : where, durability)
    },
    30_000,
  )
})

/**
 * Stopped rather than killed: a detach (or a shutdown) at a moment `seed` picks, resumed by another
 * runtime on the same store, detached once more for some seeds, ends as the uninterrupted run.
 */
describe.each(['sync', 'async'] as const)("detach or shut down anywhere, durability '%s'", (durability) => {
  const runtimeOn = (store: RunStore) =>
    createRuntime({ agents: faultAgents, model: faultModel, store, durability })
  test.each(Array.from({ length: seeds }, (_, i) => [i + 1, i % 2 === 0 ? 'detach' : 'shutdown'] as const))(
    'seed %i: %s, resume in another runtime, same result',
    async (seed, how) => {
      const next = random(seed + 1000)
      const store = memoryStore()
      const first = runtimeOn(store)
      const run = first.start('lead', 'crash me', { runId: `stop-${seed}` })
      run.result.catch(() => {})
      await new Promise((resolve) => setTimeout(resolve, next() * runMs * 1.2))
      if (how === 'detach') await run.detach()
      else await first.shutdown()
      let resumed = await runtimeOn(store).resume(run.id)
      if (next() < 0.5) {
        await new Promise((resolve) => setTimeout(resolve, next() * runMs * 0.5))
        await resumed.detach()
        resumed = await runtimeOn(store).resume(run.id)
      }
      expect(await resumed.result, `seed ${seed}`).toEqual(expected)
      const after = await store.loadRun(run.id)
      expect(after?.agents).toHaveLength(expectedAgents)
      expect(after?.agents.filter((agent) => agent.status !== 'completed').map((agent) => agent.id)).toEqual(
        [],
      )
    },
  )
})

/** Starts the scenario in a process, kills it at a moment `seed` picks, resumes it in another, and checks its end. */
async function crashAndResume(seed: number, where: string, durability: Durability) {
  const runId = `seed-${seed}`
  const env = { COHORT_FAULT_DURABILITY: durability }
  // Process start-up is slow next to the run: the kill lands after run.started, within the run's length.
  const delay = random(seed)() * runMs * 1.2
  const first = spawnTs('tests/fixtures/fault-scenario.ts', ['start', where, runId], env)
  const firstOut = await collect(first, (line) => {
    if (line === 'event run.started -') setTimeout(() => first.kill('SIGKILL'), delay)
  })

  const store = where.startsWith('postgres:')
    ? postgresStore({ connectionString: faultDatabase, schema: where.slice('postgres:'.length) })
    : fileStore(where)
  try {
    // No torn record: every record decodes and validates.
    const atCrash = await store.loadRun(runId)
    expect(atCrash, firstOut.stderr).toBeDefined()
    const finalAtCrash = new Set(
      atCrash!.agents.filter((a) => a.status === 'completed' || a.status === 'failed').map((a) => a.id),
    )

    let finalOut = firstOut.stdout
    let resumed = false
    if (firstOut.signal === 'SIGKILL') {
      resumed = true
      const second = await collect(spawnTs('tests/fixtures/fault-scenario.ts', ['resume', where, runId], env))
      expect(second.code, second.stderr).toBe(0)
      // Exactly-once completion: an agent already final in the store is never run to an end again.
      const settledAgain = second.stdout
        .split('\n')
        .map((line) => /^event agent\.(completed|failed) (\S+)$/.exec(line)?.[2])
        .filter((id): id is string => id !== undefined && finalAtCrash.has(id))
      expect(settledAgain).toEqual([])
      finalOut = second.stdout
    }
    expect(
      resultLine(finalOut),
      `seed ${seed}, killed after ${delay.toFixed(0)} ms, resumed: ${resumed}`,
    ).toEqual(expected)

    const after = await store.loadRun(runId)
    expect(after?.run).toMatchObject({ status: 'completed', result: expected })
    expect(after?.agents).toHaveLength(expectedAgents)
    const unfinished = after?.agents
      .filter((a) => a.status !== 'completed')
      .map((a) => `${a.id}: ${a.status}`)
    expect(unfinished, `seed ${seed}, killed after ${delay.toFixed(0)} ms`).toEqual([])
  } finally {
    await store.close?.()
  }
}
