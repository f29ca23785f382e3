import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import {
  type AgentRecord,
  createRuntime,
  fileStore,
  type RunStore,
  SnapshotError,
  StoreError,
} from '@cohort/core'
import { afterEach, beforeEach, expect, test } from 'vitest'
import { faultAgents, faultModel, faultRuntime } from './fixtures/fault-scenario.js'

let dir: string
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'cohort-store-faults-'))
})
afterEach(async () => {
  await rm(dir, { recursive: true, force: true })
})

/** A file store whose agent writes start to fail (or hang) after `healthy` of them. */
function faultyStore(inner: RunStore, healthy: number, mode: 'fail' | 'hang'): RunStore {
  let writes = 0
  return {
    ...inner,
    saveAgent: async (runId: string, record: AgentRecord) => {
      if (++writes > healthy) {
        if (mode === 'fail') throw new Error('ENOSPC: no space left on device')
        return new Promise<void>(() => {})
      }
      await inner.saveAgent(runId, record)
    },
  }
}

async function runWith(store: RunStore, runId: string, options: { storeTimeoutMs?: number } = {}) {
  const runtime = createRuntime({ agents: faultAgents, model: faultModel, store, ...options })
  return runtime.start('lead', 'crash me', { runId })
}

test('a store whose writes fail stops the run with a clear error; the last good records load and resume', async () => {
  const inner = fileStore(dir)
  const run = await runWith(faultyStore(inner, 12, 'fail'), 'failing')
  const error = await run.result.catch((e: unknown) => e)
  expect(error).toBeInstanceOf(StoreError)
  expect((error as Error).message).toMatch(/store write of agents? .+ \(run failing\) failed: ENOSPC/)

  const kept = await inner.loadRun('failing')
  expect(kept?.run.status).toBe('running')
  expect(kept?.agents.length).toBeGreaterThan(0)

  // Nothing was lost: with a healthy store the run resumes and ends as an uninterrupted run.
  const expected = await faultRuntime(path.join(dir, 'clean')).run('lead', 'crash me')
  const resumed = await faultRuntime(dir).resume('failing')
  expect(await resumed.result).toEqual(expected)
})

test.each([
  ['saveRun', 'write of the run record'],
  ['claimRun', 'claim'],
  ['loadRun', 'read'],
] as const)(
  'a store whose %s fails is a StoreError naming the call and the run, its cause kept',
  async (method, call) => {
    const inner = fileStore(dir)
    if (method === 'loadRun') await faultRuntime(dir).run('lead', 'crash me', { runId: 'flaky' })
    const cause = new Error('ECONNRESET')
    const store: RunStore = { ...inner, [method]: () => Promise.reject(cause) }
    const runtime = createRuntime({ agents: faultAgents, model: faultModel, store })
    const error = await (method === 'loadRun'
      ? runtime.resume('flaky')
      : runtime.start('lead', 'crash me', { runId: 'flaky' }).result
    ).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(StoreError)
    expect((error as StoreError).message).toBe(`store ${call} (run flaky) failed: ECONNRESET`)
    expect((error as StoreError).cause).toBe(cause)
  },
)

test('a store whose writes hang stops the run with a timeout error instead of hanging it', async () => {
  const inner = fileStore(dir)
  const run = await runWith(faultyStore(inner, 8, 'hang'), 'hanging', { storeTimeoutMs: 200 })
  const error = await run.result.catch((e: unknown) => e)
  expect(error).toBeInstanceOf(StoreError)
  expect((error as Error).message).toMatch(/did not finish within 200 ms/)
  expect((await inner.loadRun('hanging'))?.run.status).toBe('running')
})

test('corrupted and truncated files give a SnapshotError naming the file', async () => {
  const runtime = faultRuntime(dir)
  await runtime.run('lead', 'crash me', { runId: 'damaged' })
  const runFile = path.join(dir, 'damaged', 'run.json')
  const original = await readFile(runFile, 'utf8')

  await writeFile(runFile, original.slice(0, 40))
  const truncated = await runtime.resume('damaged').catch((e: unknown) => e)
  expect(truncated).toBeInstanceOf(SnapshotError)
  expect((truncated as Error).message).toContain(runFile)

  await writeFile(runFile, original.replace('"status":"completed"', '"status":"exploded"'))
  const corrupted = await runtime.resume('damaged').catch((e: unknown) => e)
  expect(corrupted).toBeInstanceOf(SnapshotError)
  expect((corrupted as SnapshotError).field).toBe('status')

  const agentFile = path.join(dir, 'damaged', 'agents', 'lead.w1.json')
  await writeFile(runFile, original)
  await writeFile(agentFile, '\u0000\u0000garbage')
  await expect(runtime.resume('damaged')).rejects.toThrow(/lead\.w1\.json: not a readable record/)
})
