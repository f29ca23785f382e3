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
function faultyStore(
  inner: RunStore,
  healthy: number,
  mode: 'fail' | 'hang',
  thrown: unknown = new Error('ENOSPC: no space left on device'),
): RunStore {
  let writes = 0
  return {
    ...inner,
    saveAgent: async (runId: string, record: AgentRecord) => {
      if (++writes > healthy) {
        if (mode === 'fail') throw thrown
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

test('a store that rejects with a plain object fails the run with that object in its message', async () => {
  const run = await runWith(faultyStore(fileStore(dir), 3, 'fail', { code: 'EDQUOT', quota: 'run' }), 'quota')
  const error = await run.result.catch((e: unknown) => e)
  expect(error).toBeInstanceOf(StoreError)
  expect((error as Error).message).toMatch(/\(run quota\) failed: \{"code":"EDQUOT","quota":"run"\}/)
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

/** `store` with `method` answering its first `healthy` calls, then never again. */
function hangingAfter(
  store: RunStore,
  method: 'saveRun' | 'claimRun' | 'releaseRun' | 'loadRun' | 'loadRunRecord',
  healthy = 0,
) {
  const original = store[method]!.bind(store) as (...args: unknown[]) => Promise<unknown>
  let calls = 0
  return {
    ...store,
    [method]: (...args: unknown[]) => (++calls > healthy ? new Promise(() => {}) : original(...args)),
  } as RunStore
}

/** `promise` settled, or a failure naming `what` once `ms` have passed without it. */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} still pending after ${ms} ms`)), ms)
  })
  return Promise.race([promise, late]).finally(() => clearTimeout(timer))
}

test.each([
  ['saveRun', 0, 'write of the run record'],
  ['saveRun', 1, 'write of the run record'],
  ['claimRun', 0, 'claim'],
] as const)(
  'a store whose %s hangs (after %i calls) fails the run with a timeout naming the call; shutdown returns',
  async (method, healthy, call) => {
    const store = hangingAfter(fileStore(dir), method, healthy)
    const runtime = createRuntime({ agents: faultAgents, model: faultModel, store, storeTimeoutMs: 200 })
    const run = runtime.start('lead', 'crash me', { runId: 'stuck' })
    const error = await within(run.result, 3_000, 'run.result').catch((e: unknown) => e)
    expect(error).toBeInstanceOf(StoreError)
    expect((error as Error).message).toBe(`store ${call} (run stuck) did not finish within 200 ms`)
    await within(runtime.shutdown(), 3_000, 'runtime.shutdown()')
  },
)

test('a shutdown while a claim hangs returns once the claim times out', async () => {
  const store = hangingAfter(fileStore(dir), 'claimRun')
  const runtime = createRuntime({ agents: faultAgents, model: faultModel, store, storeTimeoutMs: 200 })
  const run = runtime.start('lead', 'crash me', { runId: 'stuck' })
  await within(runtime.shutdown(), 3_000, 'runtime.shutdown()')
  await expect(run.result).rejects.toThrow('store claim (run stuck) did not finish within 200 ms')
})

test('a release that hangs after the run finished leaves its result as it was: the record is written', async () => {
  const inner = fileStore(dir)
  const runtime = createRuntime({
    agents: faultAgents,
    model: faultModel,
    store: hangingAfter(inner, 'releaseRun'),
    storeTimeoutMs: 200,
  })
  const run = runtime.start('lead', 'crash me', { runId: 'finished' })
  const expected = await faultRuntime(path.join(dir, 'clean')).run('lead', 'crash me')
  expect(await within(run.result, 3_000, 'run.result')).toEqual(expected)
  expect((await inner.loadRun('finished'))?.run.status).toBe('completed')
  await within(runtime.shutdown(), 3_000, 'runtime.shutdown()')
})

test('a resume whose read hangs fails with a timeout naming the read', async () => {
  const inner = fileStore(dir)
  await faultRuntime(dir).run('lead', 'crash me', { runId: 'unread' })
  const store = hangingAfter(inner, 'loadRun')
  const runtime = createRuntime({ agents: faultAgents, model: faultModel, store, storeTimeoutMs: 200 })
  const error = await within(runtime.resume('unread'), 3_000, 'runtime.resume').catch((e: unknown) => e)
  expect(error).toBeInstanceOf(StoreError)
  expect((error as Error).message).toBe('store read (run unread) did not finish within 200 ms')
})

test('an answer given to a stored run whose read hangs fails with a timeout naming the read', async () => {
  const inner = fileStore(dir)
  await faultRuntime(dir).run('lead', 'crash me', { runId: 'unread' })
  const store = hangingAfter(inner, 'loadRunRecord')
  const runtime = createRuntime({ agents: faultAgents, model: faultModel, store, storeTimeoutMs: 200 })
  const answered = runtime.answer('unread', 'lead', { payload: 'late' })
  const error = await within(answered, 3_000, 'runtime.answer').catch((e: unknown) => e)
  expect(error).toBeInstanceOf(StoreError)
  expect((error as Error).message).toBe(
    'store read of the run record (run unread) did not finish within 200 ms',
  )
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
