import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileStore } from '@cohort/core'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { faultRuntime } from './fixtures/fault-scenario.js'
import { collect, resultLine, spawnTs } from './support/processes.js'

/** Seeds to try: 10 in the default suite, more with `pnpm test:faults` (COHORT_FAULT_SEEDS=50). */
const seeds = Number(process.env.COHORT_FAULT_SEEDS ?? 10)

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
    async (seed) => {
      const storeDir = path.join(dir, `seed-${seed}`)
      const runId = `seed-${seed}`
      // Process start-up is slow next to the run: the kill lands after run.started, within the run's length.
      const delay = random(seed)() * runMs * 1.2
      const first = spawnTs('tests/fixtures/fault-scenario.ts', ['start', storeDir, runId])
      const firstOut = await collect(first, (line) => {
        if (line === 'event run.started -') setTimeout(() => first.kill('SIGKILL'), delay)
      })

      const store = fileStore(storeDir)
      // No torn record: every file decodes and validates.
      const atCrash = await store.loadRun(runId)
      expect(atCrash, firstOut.stderr).toBeDefined()
      const finalAtCrash = new Set(
        atCrash!.agents.filter((a) => a.status === 'completed' || a.status === 'failed').map((a) => a.id),
      )

      let finalOut = firstOut.stdout
      let resumed = false
      if (firstOut.signal === 'SIGKILL') {
        resumed = true
        const second = await collect(spawnTs('tests/fixtures/fault-scenario.ts', ['resume', storeDir, runId]))
        expect(second.code, second.stderr).toBe(0)
        // Exactly-once completion: an agent already final on disk is never run to an end again.
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
    },
  )
})
