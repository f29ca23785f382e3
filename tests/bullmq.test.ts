import type { ChildProcess } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { type AddressInfo, connect, createServer } from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import {
  type Answer,
  createRuntime,
  defineAgent,
  defineTool,
  type ModelReply,
  memoryStore,
  RunNotFoundError,
  type RunStore,
  type RuntimeOptions,
  type SharedCall,
  StoreError,
  scriptedModel,
  settledChildren,
} from '@cohort/core'
import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest'
import { z } from 'zod'
import {
  answerRun,
  cancelRun,
  createWorker,
  enqueueRun,
  redisLimits,
  redisStore,
  resumeRun,
  segmentJobId,
  waitForRun,
} from '../packages/bullmq/src/index.js'
import {
  deleteKeys,
  dropQueue,
  openQueue,
  openRedis,
  redisReachable,
  redisUrl,
  uniqueName,
} from '../packages/bullmq/test/redis-harness.js'
import { approvalModel, executions, operator } from './fixtures/approval-scenario.js'
import { flatAgents, flatModel, ledgerAgents, ledgerModel, payees } from './fixtures/bullmq-scenario.js'
import { faultAgents, faultModel } from './fixtures/fault-scenario.js'
import { heldToolAgent } from './fixtures/held-tool.js'
import { collect, type Finished, spawnTs } from './support/processes.js'
import {
  describeRunStore,
  expectSettledRecordsFinal,
  makeAgentRecord,
  makeLongAgentRecord,
  makeRunRecord,
} from './support/run-store-conformance.js'
import { waitUntil } from './support/scripts.js'

const reachable = await redisReachable()
if (!reachable) {
  if (process.env.CI === 'true')
    throw new Error(`Redis is not reachable at ${redisUrl}: the BullMQ tests must run in CI`)
  console.warn(`\n!!! Redis is not reachable at ${redisUrl}: SKIPPING every BullMQ test !!!\n`)
}
const describeRedis = reachable ? describe : describe.skip

describeRedis('redisStore', () => {
  describeRunStore('redisStore', async (options) => {
    const prefix = `${uniqueName('cohort-test')}:`
    return { store: redisStore({ url: redisUrl, prefix, ...options }), cleanup: () => deleteKeys(prefix) }
  })

  test('listRuns skips an unreadable run, which loadRun still reports', () =>
    withRedisStore(async ({ store, redis, prefix }) => {
      for (const [i, id] of ['old', 'mid', 'new'].entries()) {
        await store.saveRun(makeRunRecord(id, { createdAt: 1_000 + i, updatedAt: 1_000 + i }))
      }
      await redis.set(`${prefix}run:new`, 'null')
      expect((await store.listRuns({ limit: 2 })).map((run) => run.id)).toEqual(['mid', 'old'])
      await expect(store.loadRun('new')).rejects.toThrow(/the record is empty/)
    }))

  test("a key of another type (written by something else) is a StoreError naming the store, the call and the run, not Redis' bare reply", () =>
    withRedisStore(async ({ store, redis, prefix }) => {
      await redis.hset(`${prefix}run:odd`, 'field', 'value')
      const error = await store.loadRun('odd').catch((e: unknown) => e)
      expect(error).toBeInstanceOf(StoreError)
      expect((error as Error).message).toMatch(
        new RegExp(`^redis store \\(prefix ${prefix}\\): loadRun of run odd failed: WRONGTYPE`),
      )
    }))

  test("a key edited to hold another run's or agent's record is a SnapshotError naming the key, and is left as it is", () =>
    withRedisStore(async ({ store, redis, prefix }) => {
      await store.saveRun(makeRunRecord('f1'))
      await store.saveRun(makeRunRecord('f2'))
      await store.saveAgent('f1', makeAgentRecord('f1', 'lead'))
      await store.saveAgent('f1', makeAgentRecord('f1', 'lead.a'))
      await store.saveAgent('f2', makeAgentRecord('f2', 'lead.a'))
      const agents = `${prefix}agents:f1`
      const [runF1, leadA] = [await redis.get(`${prefix}run:f1`), await redis.hget(agents, 'lead.a')]

      // Copied by hand: run f2's record under f1's key.
      await redis.set(`${prefix}run:f1`, (await redis.get(`${prefix}run:f2`))!)
      for (const read of [store.loadRun('f1'), store.loadRunRecord('f1')])
        await expect(read).rejects.toThrow(
          `redis:${prefix}run:f1: field "id": "f2"; expected "f1", the run its key is for`,
        )
      expect((await store.listRuns()).map((run) => run.id)).toEqual(['f2'])
      await redis.set(`${prefix}run:f1`, runF1!)

      // Agent lead's record in field lead.a: the run would load two agents lead.
      await redis.hset(agents, 'lead.a', (await redis.hget(agents, 'lead'))!)
      const twin = `redis:${agents}/lead.a: field "id": "lead"; expected "lead.a", the agent its key is for`
      await expect(store.loadRun('f1')).rejects.toThrow(twin)
      await expect(store.loadAgent('f1', 'lead.a')).rejects.toThrow(twin)

      // Run f2's agent in run f1's hash.
      const foreign = (await redis.hget(`${prefix}agents:f2`, 'lead.a'))!
      await redis.hset(agents, 'lead.a', foreign)
      const other = `redis:${agents}/lead.a: field "runId": "f2"; expected "f1", the run its key is for`
      await expect(store.loadRun('f1')).rejects.toThrow(other)
      await expect(store.loadAgent('f1', 'lead.a')).rejects.toThrow(other)
      // Nothing was rewritten or removed by the failed reads.
      expect(await redis.hget(agents, 'lead.a')).toBe(foreign)
      expect(await redis.hkeys(agents)).toEqual(['lead', 'lead.a'])
      await redis.hset(agents, 'lead.a', leadA!)
      expect((await store.loadRun('f1'))?.agents.map((agent) => agent.id).sort()).toEqual(['lead', 'lead.a'])
    }))

  test("a run whose record is gone, its agents' records still there, is a SnapshotError; a new run is not started over them", () =>
    withRedisStore(async ({ store, redis, prefix }) => {
      await store.saveRun(makeRunRecord('gone'))
      await store.saveAgent('gone', makeAgentRecord('gone', 'lead'))
      await redis.del(`${prefix}run:gone`)
      const missing = `redis:${prefix}run:gone: the run record is missing, and the store holds its agents' records`
      await expect(store.loadRun('gone')).rejects.toThrow(missing)
      await expect(store.loadRunRecord('gone')).rejects.toThrow(missing)
      expect(await store.loadRun('never')).toBeUndefined()
      expect(await store.loadRunRecord('never')).toBeUndefined()

      const runtime = createRuntime({
        agents: [defineAgent({ name: 'lead', instructions: '' })],
        model: scriptedModel({ lead: [{ action: 'finish', result: 'new' }] }),
        store,
      })
      await expect(runtime.start('lead', 'again', { runId: 'gone' }).result).rejects.toThrow(
        /run gone already exists in the store/,
      )
      const lead = JSON.parse((await redis.hget(`${prefix}agents:gone`, 'lead'))!)
      expect(lead).toMatchObject({ id: 'lead', status: 'suspended' })
      expect(await redis.exists(`${prefix}run:gone`)).toBe(0)
    }))

  test('a write adds the chunks of history it completes and leaves the stored ones; deleteRun takes them with the run', () =>
    withRedisStore(async ({ store, redis, prefix }) => {
      await store.saveRun(makeRunRecord('h1'))
      await store.saveAgent('h1', makeLongAgentRecord('h1', 'lead', 20), 0)
      const messages = makeLongAgentRecord('h1', 'lead', 40).snapshot.context.messages
      const changed = [{ role: 'system', content: 'changed' }, ...messages.slice(1, 16)]
      await redis.hset(`${prefix}history:h1`, '0:lead', JSON.stringify(changed))
      await store.saveAgents!('h1', [makeLongAgentRecord('h1', 'lead', 40)], [20])
      // Typed as there (RedisStore): no `!` needed, as the README's snippets use it.
      const loaded = await store.loadAgent('h1', 'lead')
      expect(loaded?.snapshot.context.messages).toEqual([...changed, ...messages.slice(16)])
      expect((await store.loadRun('h1'))?.agents[0]).toEqual(loaded)
      expect((await redis.hkeys(`${prefix}history:h1`)).sort()).toEqual(['0:lead', '1:lead'])
      await store.deleteRun('h1')
      expect(await redis.exists(`${prefix}history:h1`)).toBe(0)
    }))

  test('a record stored as completed or failed is final: a later write of the agent (a worker that lost its job) changes neither it nor its history', async () => {
    const prefix = `${uniqueName('cohort-test')}:`
    const store = redisStore({ url: redisUrl, prefix })
    try {
      await expectSettledRecordsFinal(store, 'f1')
    } finally {
      await store.close?.()
      await deleteKeys(prefix)
    }
  })

  test('prune finds the finished runs of a store written before it kept a set of them', async () => {
    const prefix = `${uniqueName('cohort-test')}:`
    const before = redisStore({ url: redisUrl, prefix })
    const after = redisStore({ url: redisUrl, prefix })
    try {
      for (const [i, status] of (['completed', 'failed', 'running'] as const).entries()) {
        await before.saveRun(makeRunRecord(`old-${i}`, { status, createdAt: i, updatedAt: i }))
      }
      // As a version without retention left its keys: no set of finished runs.
      await deleteKeys(`${prefix}finished`)
      expect(await after.prune!({ maxFinishedRuns: 1 })).toEqual(['old-0'])
      expect((await after.listRuns()).map((run) => run.id)).toEqual(['old-2', 'old-1'])
    } finally {
      await before.close?.()
      await after.close?.()
      await deleteKeys(prefix)
    }
  })
})

interface WorkerProcess {
  child: ChildProcess
  lines: string[]
  ready: Promise<void>
  exited: Promise<Finished>
}

function startWorker(args: string[], env: Record<string, string> = {}, onLine?: (line: string) => void) {
  const child = spawnTs('tests/fixtures/bullmq-worker.ts', args, { REDIS_URL: redisUrl, ...env })
  const lines: string[] = []
  let markReady!: () => void
  const ready = new Promise<void>((resolve) => {
    markReady = resolve
  })
  const exited = collect(child, (line) => {
    lines.push(line)
    if (line === 'ready') markReady()
    onLine?.(line)
  })
  void exited.then((finished) => {
    if (!lines.includes('ready')) throw new Error(`worker exited before it was ready:\n${finished.stderr}`)
  })
  return { child, lines, ready, exited } satisfies WorkerProcess
}

async function stopWorkers(workers: WorkerProcess[]) {
  await Promise.all(
    workers.map(async (worker) => {
      if (worker.child.exitCode === null && worker.child.signalCode === null) worker.child.kill('SIGTERM')
      await worker.exited
    }),
  )
}

/** `agent.completed` lines across processes, as agent ids. */
function completions(workers: WorkerProcess[]): string[] {
  return workers.flatMap((worker) =>
    worker.lines
      .filter((line) => line.startsWith('event agent.completed '))
      .map((line) => line.split(' ')[2]!),
  )
}

describeRedis('BullMQ workers', () => {
  let queueName: string
  let prefix: string
  let store: RunStore
  let dir: string
  let workers: WorkerProcess[] = []

  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'cohort-bullmq-'))
  })
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true })
  })

  /** Runs `body` on a fresh queue, key prefix and store; workers, queue and keys go afterwards, whatever happens. */
  const isolated = async <T>(body: () => Promise<T>): Promise<T> => {
    queueName = uniqueName('cohort-test-q')
    prefix = `${uniqueName('cohort-test')}:`
    store = redisStore({ url: redisUrl, prefix })
    workers = []
    try {
      return await body()
    } finally {
      await stopWorkers(workers)
      await dropQueue(openQueue(queueName))
      await store.close?.()
      await deleteKeys(prefix)
    }
  }

  test(
    'a run spread over 3 worker processes ends as the same run in one process',
    () =>
      isolated(async () => {
        const expected = await createRuntime({ agents: faultAgents, model: faultModel }).run(
          'lead',
          'crash me',
        )
        workers = [0, 1, 2].map(() => startWorker(['fault', queueName, prefix]))
        await Promise.all(workers.map((worker) => worker.ready))
        const runtime = createRuntime({ agents: faultAgents, model: faultModel, store })
        const { runId } = await enqueueRun({
          url: redisUrl,
          queueName,
          runtime,
          agent: 'lead',
          task: 'crash me',
        })

        const record = await waitForRun(runId, { store, timeoutMs: 30_000 })
        expect(record).toMatchObject({ status: 'completed', result: expected })
        const stored = await store.loadRun(runId)
        expect(stored?.agents).toHaveLength(11)
        expect(stored?.agents.every((agent) => agent.status === 'completed')).toBe(true)
        // Every agent completed exactly once, wherever it ran.
        expect(completions(workers).sort()).toEqual(stored!.agents.map((agent) => agent.id).sort())
        const spread = workers.map((worker) => completions([worker]).length)
        console.log(`agents completed per worker process: ${spread.join(', ')}`)
        expect(spread.filter((count) => count > 0).length).toBeGreaterThan(1)
      }),
    60_000,
  )

  test(
    'a worker SIGKILLed mid-tool: another worker finishes the run, the tool retried with the same key',
    () =>
      isolated(async () => {
        const expected = await createRuntime({
          agents: ledgerAgents(path.join(dir, 'clean-ledger.txt')),
          model: ledgerModel,
        }).run('lead', 'pay')
        const ledger = path.join(dir, 'ledger.txt')
        const fast = { LOCK_MS: '2000', STALLED_MS: '1000' }
        const first = startWorker(['ledger', queueName, prefix, ledger], fast, (line) => {
          if (line === 'tool-started lead.p1') first.child.kill('SIGKILL')
        })
        workers = [first]
        await first.ready
        const runtime = createRuntime({ agents: ledgerAgents(ledger), model: ledgerModel, store })
        const { runId } = await enqueueRun({ url: redisUrl, queueName, runtime, agent: 'lead', task: 'pay' })
        expect((await first.exited).signal).toBe('SIGKILL')
        expect((await store.loadRunRecord!(runId))?.status).toBe('running')

        const killedAt = Date.now()
        const second = startWorker(['ledger', queueName, prefix, ledger], fast)
        workers.push(second)
        const record = await waitForRun(runId, { store, timeoutMs: 30_000 })
        console.log(`run finished ${Date.now() - killedAt} ms after the kill (lock 2 s, stalled check 1 s)`)
        expect(record).toMatchObject({ status: 'completed', result: expected })
        const stored = await store.loadRun(runId)
        expect(stored?.agents.map((agent) => `${agent.id} ${agent.status}`).sort()).toEqual([
          'lead completed',
          ...payees.map((id) => `lead.${id} completed`),
        ])
        expect(completions(workers).sort()).toEqual(['lead', ...payees.map((id) => `lead.${id}`)])

        // At-least-once: the cut-off call ran again, under the key `${runId}:${agentId}:${turn}.${index}:${digest of tool and args}` it had.
        const lines = (await readFile(ledger, 'utf8')).trim().split('\n')
        const keysOf = (agentId: string) =>
          lines.filter((line) => line.startsWith(`${runId}:${agentId}:`)).map((line) => line.split(' ')[0])
        expect(keysOf('lead.p1').length).toBeGreaterThanOrEqual(2)
        for (const id of payees) {
          const keys = keysOf(`lead.${id}`)
          expect(keys.length).toBeGreaterThanOrEqual(1)
          expect(new Set(keys).size).toBe(1)
          expect(keys[0]).toMatch(new RegExp(`^${runId}:lead\\.${id}:0\\.0:[\\w-]{16}$`))
        }
      }),
    60_000,
  )

  test(
    'a run whose jobs were lost with its worker is resumed from the store',
    () =>
      isolated(async () => {
        const expected = await createRuntime({ agents: faultAgents, model: faultModel }).run(
          'lead',
          'crash me',
        )
        const first = startWorker(['fault', queueName, prefix], {}, (line) => {
          if (line === 'event agent.completed lead.w1') first.child.kill('SIGKILL')
        })
        workers = [first]
        await first.ready
        const runtime = createRuntime({ agents: faultAgents, model: faultModel, store })
        const { runId } = await enqueueRun({
          url: redisUrl,
          queueName,
          runtime,
          agent: 'lead',
          task: 'crash me',
        })
        await first.exited
        // As if Redis had lost the queue: only the store is left.
        await openQueue(queueName).obliterate({ force: true })
        const before = await store.loadRun(runId)
        expect(before?.agents.filter((agent) => agent.status !== 'completed').length).toBeGreaterThan(0)

        const second = startWorker(['fault', queueName, prefix])
        workers.push(second)
        await second.ready
        const { agents } = await resumeRun({ url: redisUrl, queueName, runtime, runId })
        expect(agents).toBeGreaterThan(1)
        const record = await waitForRun(runId, { store, timeoutMs: 30_000 })
        expect(record).toMatchObject({ status: 'completed', result: expected })
        const stored = await store.loadRun(runId)
        expect(stored?.agents).toHaveLength(11)
        expect(stored?.agents.every((agent) => agent.status === 'completed')).toBe(true)
      }),
    60_000,
  )

  test(
    'a job whose lock could not be renewed stops its segment: what another worker now stores is left as it is',
    () =>
      isolated(async () => {
        const { agent, model, started, release } = heldToolAgent()
        const runtime = createRuntime({ agents: [agent], model, store })
        const cohort = createWorker({ runtime, url: redisUrl, queueName, onError: () => {} })
        try {
          const { runId } = await enqueueRun({ url: redisUrl, queueName, runtime, agent: 'solo', task: 'go' })
          await waitUntil(started, 20_000)
          const [job] = await openQueue(queueName).getJobs(['active'])
          const before = await store.loadAgent!(runId, 'solo')
          // As BullMQ's lock manager reports a lock it could not renew.
          cohort.worker.emit('lockRenewalFailed', [job!.id!])
          await waitUntil(async () => !(await job!.isActive()), 20_000)
          release()
          await new Promise((resolve) => setTimeout(resolve, 100))
          expect(await store.loadAgent!(runId, 'solo')).toEqual(before)
        } finally {
          await cohort.close(true)
        }
      }),
    60_000,
  )

  /** A lead waiting on a manager (waiting on `b`), on `a` and on `c` (after `a`); `a` and `b` hold a tool that ignores its abort. */
  const cancelScenario = () => {
    const executions: string[] = []
    const aborted: string[] = []
    const releases: (() => void)[] = []
    const held = defineTool({
      name: 'held',
      description: 'Waits to be let through, whatever its signal says',
      parameters: z.object({}),
      execute: (_args, ctx) => {
        executions.push(ctx.agentId)
        ctx.signal.addEventListener('abort', () => aborted.push(ctx.agentId))
        return new Promise<string>((resolve) => releases.push(() => resolve('let through')))
      },
    })
    const worker = defineAgent({ name: 'worker', instructions: '', tools: [held] })
    const manager = defineAgent({ name: 'manager', instructions: '', subagents: [worker] })
    const lead = defineAgent({ name: 'lead', instructions: '', subagents: [manager, worker] })
    const model = scriptedModel({
      lead: [
        {
          action: 'launch_subagents',
          agents: [
            { agent: 'manager', task: 'm', id: 'm' },
            { agent: 'worker', task: 'a', id: 'a' },
            { agent: 'worker', task: 'c', id: 'c', depends_on: ['a'] },
          ],
        },
        { action: 'wait_for_subagents' },
        { action: 'finish', result: 'done' },
      ],
      manager: [
        { action: 'launch_subagents', agents: [{ agent: 'worker', task: 'b', id: 'b' }] },
        { action: 'wait_for_subagents' },
        { action: 'finish', result: 'managed' },
      ],
      worker: [
        { action: 'call_tool', tool: 'held', args: {} },
        { action: 'finish', result: 'worked' },
      ],
    })
    const runtime = () => createRuntime({ agents: [lead, manager, worker], model, store })
    return {
      executions,
      aborted,
      release: () => {
        for (const go of releases) go()
      },
      runtime,
    }
  }

  const liveJobsOf = async (queue: ReturnType<typeof openQueue>, runId: string) =>
    (await queue.getJobs(['active', 'wait', 'delayed', 'prioritized', 'waiting-children'], 0, -1)).filter(
      (job) => job?.data.runId === runId,
    )

  test(
    'cancelRun ends a run mid-flight: run and agents cancelled, its jobs gone, the held tools aborted and never repeated, a later job does nothing',
    () =>
      isolated(async () => {
        const scenario = cancelScenario()
        const cohorts = [0, 1].map(() =>
          createWorker({ runtime: scenario.runtime(), url: redisUrl, queueName, onError: () => {} }),
        )
        const queue = openQueue(queueName)
        try {
          const runtime = scenario.runtime()
          const { runId } = await enqueueRun({ queue, runtime, agent: 'lead', task: 'go' })
          await waitUntil(async () => {
            const states = await Promise.all((await liveJobsOf(queue, runId)).map((job) => job.getState()))
            return (
              scenario.executions.length === 2 &&
              states.sort().join() === 'active,active,delayed,waiting-children,waiting-children'
            )
          }, 20_000)
          expect(scenario.executions.sort()).toEqual(['lead.a', 'lead.m.b'])

          const waited = waitForRun(runId, { store, timeoutMs: 20_000 })
          const result = await cancelRun({ queue, runtime, runId, reason: 'changed my mind' })
          expect(result).toEqual({ runId, status: 'cancelled', alreadyEnded: false })
          expect(await waited).toMatchObject({
            status: 'cancelled',
            error: { code: 'CANCELLED', message: 'changed my mind' },
          })
          expect(await liveJobsOf(queue, runId)).toEqual([])
          expect(scenario.aborted.sort()).toEqual(['lead.a', 'lead.m.b'])
          const stored = await store.loadRun(runId)
          expect(
            stored?.agents
              .map((agent) => `${agent.id} ${agent.status} ${agent.snapshot.context.error?.code}`)
              .sort(),
          ).toEqual([
            'lead failed CANCELLED',
            'lead.a failed CANCELLED',
            'lead.c failed CANCELLED',
            'lead.m failed CANCELLED',
            'lead.m.b failed CANCELLED',
          ])

          // The tools ignored their abort: their results are not written, nothing runs on.
          scenario.release()
          await new Promise((resolve) => setTimeout(resolve, 300))
          // A job of the run that starts later finds its agent settled and does nothing.
          const late = await queue.add('a', { runId, agentId: 'lead.a', generation: 'late' })
          await waitUntil(() => late.isCompleted(), 20_000)
          expect((await queue.getJob(late.id!))?.returnvalue).toEqual({
            agentId: 'lead.a',
            kind: 'settled',
            status: 'failed',
          })
          expect(await store.loadRun(runId)).toEqual(stored)
          expect(scenario.executions.sort()).toEqual(['lead.a', 'lead.m.b'])

          // Again: it says the run had ended, and changes nothing.
          expect(await cancelRun({ queue, runtime, runId })).toEqual({
            runId,
            status: 'cancelled',
            alreadyEnded: true,
          })
          expect(await store.loadRun(runId)).toEqual(stored)
        } finally {
          scenario.release()
          await Promise.all(cohorts.map((cohort) => cohort.close(true)))
          await queue.close()
        }
      }),
    60_000,
  )

  test(
    'cancelRun of a run that has ended says so and leaves it as it was; of an unknown run, RUN_NOT_FOUND',
    () =>
      isolated(async () => {
        const runtime = createRuntime({ agents: flatAgents, model: flatModel(5), store })
        const cohort = createWorker({ runtime, url: redisUrl, queueName, onError: () => {} })
        try {
          const { runId } = await enqueueRun({ url: redisUrl, queueName, runtime, agent: 'solo', task: 'go' })
          expect(await waitForRun(runId, { store, timeoutMs: 20_000 })).toMatchObject({ status: 'completed' })
          const before = await store.loadRun(runId)
          expect(await cancelRun({ url: redisUrl, queueName, runtime, runId })).toEqual({
            runId,
            status: 'completed',
            alreadyEnded: true,
          })
          expect(await store.loadRun(runId)).toEqual(before)
          await expect(
            cancelRun({ url: redisUrl, queueName, runtime, runId: 'nosuchrun' }),
          ).rejects.toBeInstanceOf(RunNotFoundError)
        } finally {
          await cohort.close()
        }
      }),
    60_000,
  )

  test(
    'a job of no agent of a run (an agent with no record, no data, a bad run id) fails alone with its reason; the live run it names finishes',
    () =>
      isolated(async () => {
        const { agent, model, started, release } = heldToolAgent()
        const runtime = createRuntime({ agents: [agent], model, store })
        const errors: Error[] = []
        const cohort = createWorker({
          runtime,
          url: redisUrl,
          queueName,
          onError: (error) => errors.push(error),
        })
        const queue = openQueue(queueName)
        try {
          const { runId } = await enqueueRun({ queue, runtime, agent: 'solo', task: 'go' })
          await waitUntil(started, 20_000)
          const retried = { attempts: 3, backoff: { type: 'fixed', delay: 50 } }
          const bad = await Promise.all([
            queue.add('ghost', { runId, agentId: 'ghost' }, retried),
            queue.add('empty', undefined, retried),
            queue.add('escape', { runId: '../../etc', agentId: 'solo' }, retried),
          ])
          await waitUntil(
            async () => (await Promise.all(bad.map((job) => job.isFailed()))).every(Boolean),
            20_000,
          )
          const reasons = await Promise.all(
            bad.map(async (job) => (await queue.getJob(job.id!))?.failedReason),
          )
          expect(reasons[0]).toMatch(new RegExp(`run ${runId} has no agent "ghost"`))
          expect(reasons[1]).toMatch(/has no \{ runId, agentId \}: expected a run id/)
          expect(reasons[2]).toMatch(/"\.\.\/\.\.\/etc": expected a run id/)
          // Their failed handlers have run by now: the run is still running, and ends as it would have.
          await new Promise((resolve) => setTimeout(resolve, 200))
          expect((await store.loadRunRecord!(runId))?.status).toBe('running')
          release()
          expect(await waitForRun(runId, { store, timeoutMs: 20_000 })).toMatchObject({
            status: 'completed',
            result: 'finished',
          })
          expect(errors).toEqual([])
        } finally {
          await cohort.close(true)
          await queue.close()
        }
      }),
    60_000,
  )

  /** Runtimes of a rolling deploy: the old one lacks the agent `solo` the current one runs. */
  const twoVersions = () => ({
    stale: createRuntime({
      agents: [defineAgent({ name: 'other', instructions: '' })],
      model: flatModel(20),
      store,
    }),
    current: createRuntime({ agents: flatAgents, model: flatModel(20), store }),
  })

  test(
    'a rolling deploy: a job taken by a worker whose runtime lacks its agent is put back, not failed, and a worker that has the agent finishes the run',
    () =>
      isolated(async () => {
        const { stale, current } = twoVersions()
        const old = createWorker({ runtime: stale, url: redisUrl, queueName, onError: () => {} })
        let oldClosed: Promise<void> | undefined
        const closeOld = () => (oldClosed ??= old.close())
        const queue = openQueue(queueName)
        let fresh: ReturnType<typeof createWorker> | undefined
        try {
          const { runId } = await enqueueRun({ queue, runtime: current, agent: 'solo', task: 'go' })
          const [job] = await queue.getJobs(['wait', 'active', 'delayed'])
          // Three takes by the old worker: as many as the job's attempts, which used to fail the run.
          await waitUntil(async () => ((await queue.getJob(job!.id!))?.attemptsStarted ?? 0) >= 3, 20_000)
          await closeOld()
          const put = await queue.getJob(job!.id!)
          expect(await put?.getState()).toBe('delayed')
          expect(put?.data.missingDefinitionSince).toBeTypeOf('number')
          expect((await store.loadRunRecord!(runId))?.status).toBe('running')
          fresh = createWorker({ runtime: current, url: redisUrl, queueName, onError: () => {} })
          expect(await waitForRun(runId, { store, timeoutMs: 30_000 })).toMatchObject({ status: 'completed' })
          // Taken by a worker with the agent, its wait is over: a later wait would start afresh.
          expect((await queue.getJob(job!.id!))?.data.missingDefinitionSince).toBeUndefined()
        } finally {
          await closeOld()
          await fresh?.close()
          await queue.close()
        }
      }),
    60_000,
  )

  test(
    'a job no worker has the agent for fails its run after missingDefinitionWaitMs, saying every worker must register the same agents',
    () =>
      isolated(async () => {
        const { stale, current } = twoVersions()
        const old = createWorker({
          runtime: stale,
          url: redisUrl,
          queueName,
          missingDefinitionWaitMs: 1500,
          onError: () => {},
        })
        try {
          const { runId } = await enqueueRun({
            url: redisUrl,
            queueName,
            runtime: current,
            agent: 'solo',
            task: 'go',
          })
          const record = await waitForRun(runId, { store, timeoutMs: 30_000 })
          expect(record.status).toBe('failed')
          expect(record.error?.message).toMatch(
            /agent definition "solo" is not registered in this runtime: the workers that took this job in \d+ ms lack it; every worker must register the same agents/,
          )
        } finally {
          await old.close()
        }
      }),
    60_000,
  )

  test(
    'a run id used again after its run was deleted runs again (its old jobs are not taken for the new ones)',
    () =>
      isolated(async () => {
        const runtime = createRuntime({ agents: faultAgents, model: faultModel, store })
        const worker = createWorker({ runtime, url: redisUrl, queueName, onError: () => {} })
        try {
          for (const round of [1, 2]) {
            await enqueueRun({
              url: redisUrl,
              queueName,
              runtime,
              agent: 'lead',
              task: 'crash me',
              runId: 'nightly',
            })
            const record = await waitForRun('nightly', { store, timeoutMs: 20_000 })
            expect(record.status, `round ${round}`).toBe('completed')
            await store.deleteRun!('nightly')
          }
        } finally {
          await worker.close()
        }
      }),
    60_000,
  )

  test(
    'a rolling deploy: an approved call of a tool a worker lacks is put back, not failed, and a worker with the tool runs it',
    () =>
      isolated(async () => {
        const current = createRuntime({ agents: [operator], model: approvalModel, store })
        // The version before the deploy: the same agent, without the tool its approved call names.
        const withoutDeploy = defineAgent({
          ...operator,
          tools: operator.tools.filter((t) => t.name !== 'deploy'),
        })
        const stale = createRuntime({ agents: [withoutDeploy], model: approvalModel, store })
        let worker = createWorker({ runtime: current, url: redisUrl, queueName, onError: () => {} })
        const queue = openQueue(queueName)
        const deploysBefore = executions.filter((line) => line === 'deploy api').length
        try {
          const { runId } = await enqueueRun({ queue, runtime: current, agent: 'operator', task: 'ship it' })
          const awaiting = () => store.loadAgent!(runId, 'operator').then((a) => a?.snapshot.context.awaiting)
          await waitUntil(async () => (await awaiting())?.kind === 'approval', 20_000)
          await waitUntil(
            async () => (await queue.getJobs(['active', 'wait', 'delayed'])).length === 0,
            20_000,
          )
          await worker.close()
          worker = createWorker({ runtime: stale, url: redisUrl, queueName, onError: () => {} })
          const { callId } = (await awaiting())!
          await answerRun({
            url: redisUrl,
            queueName,
            runtime: current,
            runId,
            agentId: 'operator',
            answer: { approve: callId },
          })
          const [job] = await queue.getJobs(['wait', 'active', 'delayed'])
          // Three takes by the stale worker: as many as the job's attempts, which used to fail the run.
          await waitUntil(async () => ((await queue.getJob(job!.id!))?.attemptsStarted ?? 0) >= 3, 20_000)
          await worker.close()
          expect(await (await queue.getJob(job!.id!))?.getState()).toBe('delayed')
          expect((await store.loadRunRecord!(runId))?.status).toBe('running')
          worker = createWorker({ runtime: current, url: redisUrl, queueName, onError: () => {} })
          await waitUntil(async () => (await awaiting())?.kind === 'input', 30_000)
          expect(executions.filter((line) => line === 'deploy api').length - deploysBefore).toBe(1)
        } finally {
          await worker.close()
          await queue.close()
        }
      }),
    60_000,
  )

  test(
    'an agent waiting on a person is answered with answerRun, and the workers finish the run',
    () =>
      isolated(async () => {
        const runtime = createRuntime({ agents: [operator], model: approvalModel, store })
        const worker = createWorker({ runtime, url: redisUrl, queueName, onError: () => {} })
        const deploysBefore = executions.filter((line) => line === 'deploy api').length
        try {
          const { runId } = await enqueueRun({
            url: redisUrl,
            queueName,
            runtime,
            agent: 'operator',
            task: 'ship it',
          })
          const awaiting = async (kind: 'approval' | 'input') => {
            let found: { callId: string } | null | undefined
            await waitUntil(async () => {
              found = (await store.loadAgent!(runId, 'operator'))?.snapshot.context.awaiting
              return (found as { kind?: string } | null | undefined)?.kind === kind
            }, 20_000)
            return found!
          }
          const answerOperator = (value: Answer) =>
            answerRun({ url: redisUrl, queueName, runtime, runId, agentId: 'operator', answer: value })
          // The job of an agent that waits ends soon after it parks; an answer before that is refused.
          const answer = async (value: Answer) => {
            await waitUntil(async () => {
              try {
                await answerOperator(value)
                return true
              } catch (error) {
                if (/in flight/.test((error as Error).message)) return false
                throw error
              }
            }, 20_000)
          }
          const approval = await awaiting('approval')
          // Three people approve at once, once the job has parked: one answer goes through, and
          // the tool runs once (each answer used to enqueue the whole run again).
          await waitUntil(async () => {
            const jobs = await openQueue(queueName).getJobs(['active', 'wait', 'delayed', 'waiting-children'])
            return jobs.length === 0
          }, 20_000)
          const together = await Promise.allSettled(
            [1, 2, 3].map(() => answerOperator({ approve: approval.callId })),
          )
          expect(together.filter((outcome) => outcome.status === 'fulfilled')).toHaveLength(1)
          for (const outcome of together) {
            if (outcome.status === 'rejected') {
              expect(String(outcome.reason)).toMatch(
                /being answered by another call|in flight|not waiting for approval/,
              )
            }
          }
          await awaiting('input')
          expect(executions.filter((line) => line === 'deploy api').length - deploysBefore).toBe(1)
          await expect(answerOperator({ approve: 'call-nope' })).rejects.toThrow(/call-nope|in flight/)
          await answer({ payload: 'eu-west' })
          const record = await waitForRun(runId, { store, timeoutMs: 20_000 })
          expect(record.status).toBe('completed')
          expect(JSON.stringify(record.result)).toContain('eu-west')
          expect(executions.filter((line) => line === 'deploy api').length - deploysBefore).toBe(1)
        } finally {
          await worker.close()
        }
      }),
    60_000,
  )

  test(
    'an agent waiting for approval while a sibling depends_on it is answered with answerRun: the run ends, the tool and the dependent each run once',
    () =>
      isolated(async () => {
        const ran: string[] = []
        const runtimes = [0, 1].map(() => createRuntime({ ...dependentScenario(ran, true), store }))
        const inProcess = runtimes.map((runtime) =>
          createWorker({ runtime, url: redisUrl, queueName, onError: () => {} }),
        )
        try {
          const runtime = runtimes[0]!
          const { runId } = await enqueueRun({ url: redisUrl, queueName, runtime, agent: 'lead', task: 'go' })
          let callId = ''
          await waitUntil(async () => {
            callId = (await store.loadAgent!(runId, 'lead.op'))?.snapshot.context.awaiting?.callId ?? ''
            return callId !== ''
          }, 20_000)
          // The dependent polls and the lead waits on its children: neither does any work, so the
          // answer goes through (it used to be refused as "in flight" for as long as one tried).
          await waitUntil(async () => {
            try {
              await answerRun({
                url: redisUrl,
                queueName,
                runtime,
                runId,
                agentId: 'lead.op',
                answer: { approve: callId },
              })
              return true
            } catch (error) {
              if (/in flight/.test((error as Error).message)) return false
              throw error
            }
          }, 10_000)
          const record = await waitForRun(runId, { store, timeoutMs: 20_000 })
          expect(record).toMatchObject({ status: 'completed', result: ['op', 'after'] })
          expect(ran.sort()).toEqual(['dependency', 'dependent'])
        } finally {
          await Promise.all(inProcess.map((worker) => worker.close()))
        }
      }),
    60_000,
  )

  test(
    'a dependent waiting behind a dependency of about 2 s is tried again ever later, not every dependencyRetryMs',
    () =>
      isolated(async () => {
        const ran: string[] = []
        let segments = 0
        const runtime = createRuntime({ ...dependentScenario(ran, false), store })
        const counted = {
          ...runtime,
          runSegment: (...args: Parameters<typeof runtime.runSegment>) => {
            if (args[1] === 'lead.after') segments++
            return runtime.runSegment(...args)
          },
        }
        const worker = createWorker({ runtime: counted, url: redisUrl, queueName, onError: () => {} })
        try {
          const { runId } = await enqueueRun({ url: redisUrl, queueName, runtime, agent: 'lead', task: 'go' })
          expect(await waitForRun(runId, { store, timeoutMs: 20_000 })).toMatchObject({ status: 'completed' })
          expect(ran).toEqual(['dependency', 'dependent'])
          // Tried at 0, 0.1, 0.2, 0.4, 0.8, 1.6 and 3.2 s: 7 segments (every 0.1 s: 15 or more).
          console.log(`segments of the dependent: ${segments}`)
          expect(segments).toBeLessThanOrEqual(8)
        } finally {
          await worker.close()
        }
      }),
    60_000,
  )

  test(
    'a dependent delayed for its dependency starts as the dependency settles, not at its next try',
    () =>
      isolated(async () => {
        const ran: string[] = []
        const at: Record<string, number> = {}
        const runtime = createRuntime({ ...dependentScenario(ran, false, at), store })
        // Its next try would be 8 s after the first (the dependency takes 2 s).
        const worker = createWorker({
          runtime,
          url: redisUrl,
          queueName,
          dependencyRetryMs: 8_000,
          onError: () => {},
        })
        try {
          const { runId } = await enqueueRun({ url: redisUrl, queueName, runtime, agent: 'lead', task: 'go' })
          expect(await waitForRun(runId, { store, timeoutMs: 20_000 })).toMatchObject({ status: 'completed' })
          expect(ran).toEqual(['dependency', 'dependent'])
          const lateMs = at.dependent! - at.dependency!
          console.log(`the dependent ran ${lateMs.toFixed(0)} ms after its dependency`)
          expect(lateMs).toBeLessThan(3_000)
        } finally {
          await worker.close()
        }
      }),
    60_000,
  )

  test('2 workers finish a latency-bound batch faster than 1', async () => {
    const timeBatch = (workerCount: number) =>
      isolated(async () => {
        const runtimes = Array.from({ length: workerCount }, () =>
          createRuntime({ agents: flatAgents, model: flatModel(150), store }),
        )
        const inProcess = runtimes.map((runtime) =>
          createWorker({ runtime, url: redisUrl, queueName, concurrency: 3 }),
        )
        const queue = openQueue(queueName)
        try {
          await Promise.all(inProcess.map((worker) => worker.worker.waitUntilReady()))
          const started = performance.now()
          const runIds = await Promise.all(
            Array.from({ length: 24 }, async (_, i) => {
              const runtime = runtimes[0]!
              return (await enqueueRun({ queue, runtime, agent: 'solo', task: `task ${i}` })).runId
            }),
          )
          const records = await Promise.all(
            runIds.map((runId) => waitForRun(runId, { store, timeoutMs: 30_000 })),
          )
          expect(records.every((record) => record.status === 'completed')).toBe(true)
          return performance.now() - started
        } finally {
          await Promise.all(inProcess.map((worker) => worker.close()))
          await queue.close()
        }
      })
    const one = await timeBatch(1)
    const two = await timeBatch(2)
    console.log(
      `24 runs × 2 model calls of 150 ms, concurrency 3 per worker: 1 worker ${Math.round(one)} ms, 2 workers ${Math.round(two)} ms, ${(one / two).toFixed(2)}× faster`,
    )
    expect(one / two).toBeGreaterThanOrEqual(1.3)
  }, 60_000)
})

describeRedis('limits across BullMQ workers', () => {
  /** A one-turn agent on the model "limited" (latency `latencyMs`, 1,000 tokens a call) whose calls are timed. */
  const timedCalls = (latencyMs: number) => {
    const calls: { worker: number; start: number; end: number }[] = []
    const modelFor = (worker: number) =>
      scriptedModel(
        async (): Promise<ModelReply> => {
          const call = { worker, start: Date.now(), end: Number.POSITIVE_INFINITY }
          calls.push(call)
          await new Promise((resolve) => setTimeout(resolve, latencyMs))
          call.end = Date.now()
          return {
            text: '{"action":"finish","result":1}',
            usage: { promptTokens: 900, completionTokens: 100 },
          }
        },
        { name: 'limited' },
      )
    return { calls, agents: [defineAgent({ name: 'once', instructions: 'Answer.' })], modelFor }
  }

  /** Two workers on one queue, each with its own runtime (so its own scheduler), run `runs` one-call runs. */
  const twoWorkers = async (
    setup: ReturnType<typeof timedCalls>,
    options: Pick<RuntimeOptions, 'scheduler' | 'limits'>,
    runs: number,
  ) => {
    const queueName = uniqueName('cohort-test-q')
    const prefix = `${uniqueName('cohort-test')}:`
    const store = redisStore({ url: redisUrl, prefix })
    const runtimes = [0, 1].map((worker) =>
      createRuntime({ agents: setup.agents, model: setup.modelFor(worker), ...options, store }),
    )
    const workers = runtimes.map((runtime) =>
      createWorker({ runtime, url: redisUrl, queueName, concurrency: 15 }),
    )
    const queue = openQueue(queueName)
    try {
      await Promise.all(workers.map((worker) => worker.worker.waitUntilReady()))
      const runIds = await Promise.all(
        Array.from({ length: runs }, async (_, i) => {
          const { runId } = await enqueueRun({ queue, runtime: runtimes[0]!, agent: 'once', task: `t${i}` })
          return runId
        }),
      )
      return await Promise.all(runIds.map((runId) => waitForRun(runId, { store, timeoutMs: 30_000 })))
    } finally {
      await Promise.all(workers.map((worker) => worker.close()))
      await dropQueue(queue)
      await store.close?.()
      await deleteKeys(prefix)
    }
  }

  /** The most calls (or tokens, at `each` a call) started within any window, over what the bucket allows then. */
  const worstExcess = (starts: number[], burst: number, perSecond: number, each = 1) => {
    const sorted = [...starts].sort((a, b) => a - b)
    let worst = Number.NEGATIVE_INFINITY
    for (let i = 0; i < sorted.length; i++) {
      for (let j = i; j < sorted.length; j++) {
        const allowed = burst + (perSecond * (sorted[j]! - sorted[i]!)) / 1000
        worst = Math.max(worst, (j - i + 1) * each - allowed)
      }
    }
    return worst
  }

  test('rate limits are per process under BullMQ: two workers together stay within requestsPerMinute and tokensPerMinute', async () => {
    const setup = timedCalls(50)
    // 600 requests a minute: 10 at once, then 10 a second. 12,000 tokens a minute: 12 calls of
    // 1,000 at once, then one every 5 s. Agents not started within 3 s time out, so the runs end.
    const records = await twoWorkers(
      setup,
      {
        scheduler: { rateLimits: { limited: { requestsPerMinute: 600, tokensPerMinute: 12_000 } } },
        limits: { timeoutMs: 3000 },
      },
      24,
    )
    const starts = setup.calls.map((call) => call.start)
    const excess = { requests: worstExcess(starts, 10, 10), tokens: worstExcess(starts, 12_000, 200, 1000) }
    console.log(
      `two workers sharing the limits started ${starts.length} of 24 calls in 3 s; most over the buckets in any window: ${excess.requests.toFixed(2)} requests, ${Math.round(excess.tokens)} tokens`,
    )
    expect(records.filter((record) => record.status === 'completed').length).toBe(starts.length)
    // Slack: a call no later than its bucket allows may be seen a little early (clocks), and each
    // worker's first call reserves only its estimate, before any call of its kind has ended.
    expect(excess.requests).toBeLessThanOrEqual(1)
    expect(excess.tokens).toBeLessThanOrEqual(2000)
    expect(starts.length).toBeGreaterThanOrEqual(10)
    expect(new Set(setup.calls.map((call) => call.worker)).size).toBe(2)
  }, 60_000)

  test('maxConcurrentModelCalls is per process under BullMQ: two workers together never have more calls in flight', async () => {
    const setup = timedCalls(100)
    const records = await twoWorkers(setup, { scheduler: { maxConcurrentModelCalls: 3 } }, 16)
    expect(records.every((record) => record.status === 'completed')).toBe(true)
    const events = setup.calls.flatMap((call) => [
      { at: call.start, delta: 1 },
      { at: call.end, delta: -1 },
    ])
    // An end and a start at the same millisecond: the end came first (the place passed on).
    events.sort((a, b) => a.at - b.at || a.delta - b.delta)
    let inFlight = 0
    let most = 0
    for (const event of events) {
      inFlight += event.delta
      most = Math.max(most, inFlight)
    }
    expect(setup.calls).toHaveLength(16)
    expect(most).toBeLessThanOrEqual(3)
    // Both workers made calls: the limit held between them, not inside one.
    expect(new Set(setup.calls.map((call) => call.worker)).size).toBe(2)
  }, 60_000)

  test('startIntervalMs holds across BullMQ workers: two workers together start calls at least the interval apart', async () => {
    const setup = timedCalls(20)
    const records = await twoWorkers(setup, { scheduler: { startIntervalMs: 150 } }, 8)
    expect(records.every((record) => record.status === 'completed')).toBe(true)
    const starts = setup.calls.map((call) => call.start).sort((a, b) => a - b)
    const gaps = starts.slice(1).map((start, i) => start - starts[i]!)
    console.log(`two workers with startIntervalMs 150: gaps between starts ${gaps.join(', ')} ms`)
    expect(starts).toHaveLength(8)
    // Slack for the clocks: Redis times the interval, each worker stamps its own start.
    expect(Math.min(...gaps)).toBeGreaterThanOrEqual(140)
    expect(new Set(setup.calls.map((call) => call.worker)).size).toBe(2)
  }, 60_000)

  test("a run's shared budget starts from what its stored records used, settles each call with what it used, and gives back a call that did not start", async () => {
    const prefix = `${uniqueName('cohort-test-limits')}:`
    const errors: Error[] = []
    const limits = redisLimits({ url: redisUrl, prefix, pollMs: 5, onError: (error) => errors.push(error) })
    let asked = 0
    const budget = {
      runId: 'r1',
      max: 1000,
      spent: async () => {
        asked++
        return 700
      },
    }
    const call = (tokens: number, extra: Partial<SharedCall> = {}): SharedCall => ({
      model: 'm',
      tokens,
      rate: undefined,
      maxConcurrent: undefined,
      budget,
      ...extra,
    })
    try {
      // 700 used as stored: 400 more does not fit, 200 does.
      expect(await limits.tryStart(call(400))).toEqual({ started: false, overBudget: { used: 700 } })
      const first = await limits.tryStart(call(200))
      expect(first.started).toBe(true)
      // 700 used and 200 reserved: 150 does not fit while the first call runs.
      expect(await limits.tryStart(call(150))).toMatchObject({ started: false })
      if (first.started) first.end(50)
      // Settled at what it used: 750, so 251 does not fit, and (below) 250 does.
      await waitUntil(async () => {
        const answer = await limits.tryStart(call(251))
        return 'overBudget' in answer && answer.overBudget.used === 750
      })
      // A call held back by another limit (no place among 1 in flight) gives its estimate back.
      const holder = await limits.tryStart(call(0, { maxConcurrent: 1 }))
      expect(await limits.tryStart(call(250, { maxConcurrent: 1 }))).toMatchObject({
        started: false,
        retryInMs: 5,
      })
      if (holder.started) holder.end(0)
      const last = await limits.tryStart(call(250))
      expect(last.started).toBe(true)
      // The store was read once, for the run's first call.
      expect(asked).toBe(1)
    } finally {
      await limits.close()
      await deleteKeys(prefix)
    }
    // Every settle and give-back went through (they run behind the calls).
    expect(errors).toEqual([])
  })

  test("maxRunTokens holds for a run spread over workers: its agents' calls together stay within the budget", async () => {
    // A lead launches 10 agents of one call each, 1,000 tokens a call (their model caps a reply at
    // 1,000 tokens, so each call reserves at least what it uses), under a run budget of 4,500.
    const calls: number[] = []
    const spenderModel = (worker: number) => ({
      ...scriptedModel(async (): Promise<ModelReply> => {
        calls.push(worker)
        await new Promise((resolve) => setTimeout(resolve, 50))
        return { text: '{"action":"finish","result":1}', usage: { promptTokens: 0, completionTokens: 1000 } }
      }),
      maxTokens: 1000,
    })
    const leadModel = scriptedModel((request) =>
      request.turn === 0
        ? [
            {
              action: 'launch_subagents',
              agents: Array.from({ length: 10 }, (_, i) => ({
                agent: 'spender',
                task: `s${i}`,
                id: `s${i}`,
              })),
            },
            { action: 'wait_for_subagents' },
          ]
        : { text: '{"action":"finish","result":"done"}', usage: { promptTokens: 0, completionTokens: 0 } },
    )
    const queueName = uniqueName('cohort-test-q')
    const prefix = `${uniqueName('cohort-test')}:`
    const store = redisStore({ url: redisUrl, prefix })
    const runtimes = [0, 1].map((worker) => {
      const spender = defineAgent({ name: 'spender', instructions: 'Spend.', model: spenderModel(worker) })
      const lead = defineAgent({ name: 'lead', instructions: 'Fan out.', subagents: [spender] })
      return createRuntime({
        agents: [lead, spender],
        model: leadModel,
        limits: { maxRunTokens: 4500 },
        store,
      })
    })
    // Two jobs at a time a worker: the ten spenders cannot all go to one worker, which would
    // leave the budget's sharing between workers untested (a loaded machine made that happen).
    const workers = runtimes.map((runtime) =>
      createWorker({ runtime, url: redisUrl, queueName, concurrency: 2 }),
    )
    const queue = openQueue(queueName)
    try {
      await Promise.all(workers.map((worker) => worker.worker.waitUntilReady()))
      const { runId } = await enqueueRun({ queue, runtime: runtimes[0]!, agent: 'lead', task: 'go' })
      const record = await waitForRun(runId, { store, timeoutMs: 30_000 })
      // The lead's own last call may not fit what the workers left: the run then fails, saying why.
      if (record.status !== 'completed') expect(record.error?.message).toMatch(/maxRunTokens/)
      const { agents } = (await store.loadRun(runId))!
      const tokens = agents.reduce(
        (sum, agent) =>
          sum + agent.snapshot.context.usage.promptTokens + agent.snapshot.context.usage.completionTokens,
        0,
      )
      const refused = agents.filter(
        (agent) =>
          agent.name === 'spender' && /maxRunTokens/.test(agent.snapshot.context.error?.message ?? ''),
      )
      console.log(
        `10 agents of 1,000 tokens under a run budget of 4,500 on two workers: ${calls.length} calls made, ${tokens} tokens used by the run, ${refused.length} refused`,
      )
      expect(tokens).toBeLessThanOrEqual(4500)
      expect(calls.length).toBeGreaterThanOrEqual(1)
      expect(refused).toHaveLength(10 - calls.length)
      // The budget held between the workers, not inside one.
      expect(new Set(calls).size).toBe(2)
    } finally {
      await Promise.all(workers.map((worker) => worker.close()))
      await dropQueue(queue)
      await store.close?.()
      await deleteKeys(prefix)
      await deleteKeys(`cohort-limits:${queueName}:`)
    }
  }, 60_000)
})

test('cancelRun refuses a waitMs that is no number of ms before it cancels anything', async () => {
  const runtime = createRuntime({ agents: flatAgents, model: flatModel(1) })
  for (const waitMs of [Number.NaN, -1, '5 s'])
    await expect(cancelRun({ runtime, runId: 'r1', waitMs } as never)).rejects.toThrow(
      /^cancelRun: waitMs must be a number of ms, 0 or more, got /,
    )
})

test('enqueueRun to a queue it cannot reach (Redis down, a bad queue name) says so at once and stores no run', async () => {
  const port = await unusedPort()
  const store = memoryStore()
  const runtime = createRuntime({ agents: flatAgents, model: flatModel(1), store })
  const enqueue = enqueueRun({ url: `redis://127.0.0.1:${port}`, runtime, agent: 'solo', task: 'go' })
  await expect(
    Promise.race([enqueue, new Promise((resolve) => setTimeout(() => resolve('still waiting'), 10_000))]),
  ).rejects.toMatchObject({
    code: 'QUEUE_UNREACHABLE',
    message: expect.stringMatching(
      /^enqueueRun: cannot reach the Redis of queue "cohort" \(.*ECONNREFUSED.*\); nothing was written/,
    ),
  })
  await expect(
    enqueueRun({ url: redisUrl, queueName: 'a:b', runtime, agent: 'solo', task: 'go' }),
  ).rejects.toThrow(':')
  expect(await store.listRuns!()).toEqual([])
})

test('many enqueueRun calls at once on one shared queue add one error listener to it, not one each (no MaxListenersExceededWarning)', async () => {
  const warnings: string[] = []
  const onWarning = (warning: Error) => warnings.push(warning.name)
  process.on('warning', onWarning)
  const queue = openQueue(uniqueName('shared'))
  try {
    const runtime = createRuntime({ agents: flatAgents, model: flatModel(1) })
    const runs = await Promise.all(
      Array.from({ length: 12 }, () => enqueueRun({ queue, runtime, agent: 'solo', task: 'go' })),
    )
    expect(new Set(runs.map((run) => run.runId)).size).toBe(12)
    expect(queue.listenerCount('error')).toBe(0)
    await new Promise((resolve) => setImmediate(resolve))
    expect(warnings).not.toContain('MaxListenersExceededWarning')
  } finally {
    process.off('warning', onWarning)
    await dropQueue(queue)
  }
})

test("a worker whose Redis is down reports its connections' errors to onError, and prints none on the console", async () => {
  const port = await unusedPort()
  const printed: string[] = []
  const consoleError = vi.spyOn(console, 'error').mockImplementation((...args) => {
    printed.push(args.map(String).join(' '))
  })
  const errors: Error[] = []
  const runtime = createRuntime({
    agents: flatAgents,
    model: flatModel(1),
    scheduler: { maxConcurrentModelCalls: 2 },
  })
  const cohort = createWorker({
    runtime,
    url: `redis://127.0.0.1:${port}`,
    onError: (error) => errors.push(error),
  })
  try {
    await waitUntil(() => errors.length >= 3, 10_000)
    // The worker's own clients (cancel messages, dependents) connect at once; give them time to fail too.
    await new Promise((resolve) => setTimeout(resolve, 1_000))
    expect(printed).toEqual([])
    expect(errors.every((error) => /ECONNREFUSED/.test(error.message))).toBe(true)
    // A graceful close, as a SIGTERM handler calls it, ends: it waited for the Redis without end.
    await expect(
      Promise.race([
        cohort.close(),
        new Promise((resolve) => setTimeout(() => resolve('still closing'), 10_000)),
      ]),
    ).resolves.toBeUndefined()
  } finally {
    await cohort.close(true)
    consoleError.mockRestore()
  }
})

test('resumeRun, answerRun and cancelRun with Redis down say so at once and change nothing stored', async () => {
  const url = `redis://127.0.0.1:${await unusedPort()}`
  const store = memoryStore()
  const runtime = createRuntime({ agents: flatAgents, model: flatModel(1), store })
  const { runId } = await runtime.prepareRun('solo', 'go')
  const before = await store.loadRun(runId)
  const calls = {
    resumeRun: () => resumeRun({ url, runtime, runId }),
    answerRun: () => answerRun({ url, runtime, runId, agentId: 'solo', answer: { payload: 'x' } }),
    cancelRun: () => cancelRun({ url, runtime, runId }),
  }
  for (const [name, call] of Object.entries(calls)) {
    await expect(
      Promise.race([call(), new Promise((resolve) => setTimeout(() => resolve('still waiting'), 10_000))]),
    ).rejects.toMatchObject({
      code: 'QUEUE_UNREACHABLE',
      message: expect.stringMatching(
        new RegExp(`^${name}: cannot reach the Redis of queue "cohort" \\(.*ECONNREFUSED`),
      ),
    })
  }
  expect(await store.loadRun(runId)).toEqual(before)
})

test("redisLimits' close ends at once with Redis down, though a call waits on Redis (a worker's close(true) waited on it)", async () => {
  const errors: Error[] = []
  const limits = redisLimits({
    url: `redis://127.0.0.1:${await unusedPort()}`,
    onError: (error) => errors.push(error),
  })
  const call: SharedCall = { model: 'm', tokens: 10, rate: undefined, maxConcurrent: 2 }
  void limits.tryStart(call).catch(() => {})
  await waitUntil(() => errors.length > 0, 10_000)
  const closed = limits.close().then(() => 'closed')
  const late = new Promise((resolve) => setTimeout(() => resolve('still waiting'), 5_000))
  expect(await Promise.race([closed, late])).toBe('closed')
})

test('createWorker refuses a runtime that is none, and counts and durations that are no numbers, before it opens a connection', () => {
  const runtime = createRuntime({ agents: flatAgents, model: flatModel(1) })
  const bad: [Record<string, unknown>, RegExp][] = [
    [{ runtime: undefined }, /^createWorker: runtime must be a Runtime made by createRuntime, got undefined/],
    [{ concurrency: 0 }, /^createWorker: concurrency must be a whole number, 1 or more, got 0/],
    [{ concurrency: 2.5 }, /^createWorker: concurrency must be a whole number, 1 or more, got 2.5/],
    [{ maxStalledCount: -1 }, /^createWorker: maxStalledCount must be a whole number, 0 or more, got -1/],
    [{ lockDuration: -5 }, /^createWorker: lockDuration must be a number of ms, more than 0, got -5/],
    [
      { stalledInterval: Number.NaN },
      /^createWorker: stalledInterval must be a number of ms, more than 0, got NaN/,
    ],
    [
      { dependencyRetryMs: 'x' },
      /^createWorker: dependencyRetryMs must be a number of ms, more than 0, got "x"/,
    ],
    [
      { missingDefinitionWaitMs: '5' },
      /^createWorker: missingDefinitionWaitMs must be a number of ms, 0 or more, got "5"/,
    ],
  ]
  for (const [options, message] of bad)
    expect(() => createWorker({ runtime, url: redisUrl, autorun: false, ...options } as never)).toThrow(
      message,
    )
})

test('an option key a call does not take (a typo) is refused, naming it and the ones it takes, with nothing written or queued', async () => {
  const queueName = uniqueName('cohort-test-q')
  const queue = openQueue(queueName)
  const store = memoryStore()
  const runtime = createRuntime({ agents: flatAgents, model: flatModel(1), store })
  try {
    await expect(
      enqueueRun({ queue, runtime, agent: 'solo', task: 'go', runid: 'r1' } as never),
    ).rejects.toThrow(
      /^enqueueRun: unknown option "runid"; options are connection, url, queue, queueName, runtime, agent, task, runId$/,
    )
    expect(await store.listRuns()).toEqual([])
    expect(await queue.getJobCounts('wait')).toEqual({ wait: 0 })
    const { runId } = await enqueueRun({ queue, runtime, agent: 'solo', task: 'go' })
    const refusals: [Promise<unknown>, string][] = [
      [resumeRun({ queue, runtime, runId, force: true } as never), 'resumeRun: unknown option "force"'],
      [
        answerRun({ queue, runtime, runId, agentId: 'solo', answer: { approve: true }, agent: 'x' } as never),
        'answerRun: unknown option "agent"',
      ],
      [
        cancelRun({ queue, runtime, runId, wait: 5 } as never),
        'cancelRun: unknown option "wait"; options are',
      ],
      [waitForRun(runId, { store, timeout: 5 } as never), 'waitForRun: unknown option "timeout"'],
    ]
    for (const [call, message] of refusals) await expect(call).rejects.toThrow(message)
    expect(() => createWorker({ runtime, url: redisUrl, autorun: false, concurency: 4 } as never)).toThrow(
      'createWorker: unknown option "concurency"',
    )
    // None of them touched the run: still running, its root's job still queued.
    expect((await store.loadRunRecord(runId))?.status).toBe('running')
    expect(await queue.getJobCounts('wait')).toEqual({ wait: 1 })
  } finally {
    await dropQueue(queue)
  }
})

test('missing or mistyped arguments are InvalidInputErrors saying what was expected, not TypeErrors, with nothing written or queued', async () => {
  const queueName = uniqueName('cohort-test-q')
  const queue = openQueue(queueName)
  const store = memoryStore()
  const runtime = createRuntime({ agents: flatAgents, model: flatModel(1), store })
  try {
    const refusals: [() => Promise<unknown>, RegExp][] = [
      [
        () => enqueueRun(null as never),
        /^enqueueRun: expected an options object \(\{ connection, url, queue, queueName, runtime, agent, task, runId \}\), got null$/,
      ],
      [
        () => enqueueRun({ queue, agent: 'solo', task: 'go' } as never),
        /^enqueueRun: runtime must be a Runtime made by createRuntime, got undefined$/,
      ],
      [
        () => enqueueRun({ url: redisUrl, queueName: 5, runtime, agent: 'solo', task: 'go' } as never),
        /^enqueueRun: queueName must be a non-empty string, got number 5$/,
      ],
      [
        () => waitForRun('r1', {} as never),
        /^waitForRun: store must be a RunStore \(the one the workers write to\), got undefined$/,
      ],
      [() => waitForRun('r1', undefined as never), /^waitForRun: expected an options object/],
      [
        () => resumeRun({ queue, runId: 'r1' } as never),
        /^resumeRun: runtime must be a Runtime made by createRuntime/,
      ],
      [
        () => cancelRun({ queue, runId: 'r1', runtime: {} } as never),
        /^cancelRun: runtime must be a Runtime made by createRuntime, got an object$/,
      ],
    ]
    for (const [call, message] of refusals) {
      const error = await call().catch((e: unknown) => e)
      expect(error).toMatchObject({ code: 'INVALID_INPUT' })
      expect((error as Error).message).toMatch(message)
    }
    expect(() => createWorker({ runtime, url: redisUrl, autorun: false, queueName: ['q'] } as never)).toThrow(
      /^createWorker: queueName must be a non-empty string, got an array$/,
    )
    expect(await store.listRuns()).toEqual([])

    // answerRun is refused before it looks at (or takes off) the run's jobs.
    const { runId } = await enqueueRun({ queue, runtime, agent: 'solo', task: 'go' })
    await expect(
      answerRun({ queue, runId, agentId: 'solo', answer: { approve: true } } as never),
    ).rejects.toThrow(/^answerRun: runtime must be a Runtime made by createRuntime, got undefined$/)
    expect(await queue.getJobCounts('wait')).toEqual({ wait: 1 })
  } finally {
    await dropQueue(queue)
  }
})

test("answerRun and cancelRun fail with their own Redis client's connection error, printing no unhandled error event", async () => {
  // A proxy to Redis that drops every connection opened after the queue's: Redis gone mid-call.
  let open = true
  const target = new URL(redisUrl)
  const proxy = createServer((socket) => {
    if (!open) return socket.destroy()
    const upstream = connect(Number(target.port || 6379), target.hostname)
    socket.pipe(upstream).pipe(socket)
    socket.on('error', () => upstream.destroy())
    upstream.on('error', () => socket.destroy())
  })
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve))
  const { port } = proxy.address() as AddressInfo
  const queue = openQueue(uniqueName('cohort-test-q'), `redis://127.0.0.1:${port}`)
  const printed = vi.spyOn(console, 'error').mockImplementation(() => {})
  const store = memoryStore()
  const runtime = createRuntime({ agents: flatAgents, model: flatModel(1), store })
  try {
    await queue.waitUntilReady()
    const { runId } = await enqueueRun({ queue, runtime, agent: 'solo', task: 'go' })
    open = false
    await expect(
      answerRun({ queue, runtime, runId, agentId: 'solo', answer: { payload: 'x' } }),
    ).rejects.toThrow()
    await expect(cancelRun({ queue, runtime, runId, waitMs: 0 })).rejects.toThrow()
    await new Promise((resolve) => setTimeout(resolve, 300))
    expect(printed.mock.calls.flat().join(' ')).not.toMatch(/Unhandled error event/)
  } finally {
    printed.mockRestore()
    open = true
    await queue.obliterate({ force: true })
    await queue.close()
    proxy.close()
  }
}, 20_000)

test('resumeRun of a run whose jobs are still queued is refused, adding no job: a resume tried again would run its agents twice', async () => {
  const queueName = uniqueName('cohort-test-q')
  const queue = openQueue(queueName)
  const runtime = createRuntime({ agents: flatAgents, model: flatModel(1), store: memoryStore() })
  try {
    // No worker: the root's job stays queued.
    const { runId } = await enqueueRun({ queue, runtime, agent: 'solo', task: 'go' })
    await expect(resumeRun({ queue, runtime, runId })).rejects.toThrow(
      `resumeRun: run ${runId} still has 1 job(s) queued or running`,
    )
    expect(await queue.getJobCounts('wait')).toEqual({ wait: 1 })
    // Once its jobs are gone (a Redis that lost them), it is resumed.
    await queue.obliterate({ force: true })
    expect(await resumeRun({ queue, runtime, runId })).toEqual({ runId, agents: 1 })
  } finally {
    await dropQueue(queue)
  }
})

/** A port nothing listens on: one the system gave a server that has closed since. */
async function unusedPort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  await new Promise((resolve) => server.close(resolve))
  return port
}

test('job ids are deterministic, free of ":" and distinct per agent and generation', () => {
  expect(segmentJobId({ runId: 'r1', agentId: 'lead.w1' })).toBe('r1-lead.w1')
  expect(segmentJobId({ runId: 'r1', agentId: 'lead.a:b' })).toBe('r1-lead.a%3Ab')
  expect(segmentJobId({ runId: 'r1', agentId: 'lead.a%3Ab' })).toBe('r1-lead.a%253Ab')
  expect(segmentJobId({ runId: 'r1', agentId: 'lead', generation: 'x1' })).toBe('r1-lead-gx1')
})

test('waitForRun of a run the store does not hold is RUN_NOT_FOUND at once, not a timeout', async () => {
  const started = performance.now()
  await expect(waitForRun('no-such-run', { store: memoryStore(), timeoutMs: 5_000 })).rejects.toMatchObject({
    code: 'RUN_NOT_FOUND',
  })
  expect(performance.now() - started).toBeLessThan(2_000)
})

test('waitForRun refuses a timeoutMs or intervalMs that is no number of ms, instead of waiting without end', async () => {
  const store = memoryStore()
  const runtime = createRuntime({ agents: flatAgents, model: flatModel(1), store })
  // A run that never settles: prepared, and nothing runs it.
  const { runId } = await runtime.prepareRun('solo', 'go')
  for (const bad of [
    { timeoutMs: Number.NaN },
    { timeoutMs: -1 },
    { timeoutMs: '5 s' },
    { intervalMs: Number.NaN },
    { intervalMs: 'x' },
  ]) {
    const key = Object.keys(bad)[0]!
    await expect(
      Promise.race([
        waitForRun(runId, { store, ...bad } as never),
        new Promise((resolve) => setTimeout(() => resolve('still waiting'), 3_000)),
      ]),
    ).rejects.toThrow(new RegExp(`^waitForRun: ${key} must be a number of ms, 0 or more, got `))
  }
})

/**
 * A lead launches `op` and `after`, which depends_on op. op's tool takes 2 s, or waits for an
 * approval; each tool notes its run in `ran`.
 */
function dependentScenario(
  ran: string[],
  needsApproval: boolean,
  at: Record<string, number> = {},
): Pick<RuntimeOptions, 'agents' | 'model'> {
  const slow = defineTool({
    name: 'slow',
    description: 'Takes two seconds.',
    parameters: z.object({}),
    needsApproval,
    execute: async () => {
      if (!needsApproval) await new Promise((resolve) => setTimeout(resolve, 2000))
      ran.push('dependency')
      at.dependency = performance.now()
      return 'done'
    },
  })
  const note = defineTool({
    name: 'note',
    description: 'Notes that it ran.',
    parameters: z.object({}),
    execute: () => {
      ran.push('dependent')
      at.dependent = performance.now()
      return 'noted'
    },
  })
  const op = defineAgent({ name: 'op', instructions: 'x', tools: [slow] })
  const leaf = defineAgent({ name: 'leaf', instructions: 'x', tools: [note] })
  const lead = defineAgent({ name: 'lead', instructions: 'Fan out.', subagents: [op, leaf] })
  const model = scriptedModel({
    lead: [
      {
        action: 'launch_subagents',
        agents: [
          { agent: 'op', task: 'api', id: 'op' },
          { agent: 'leaf', task: 'then', id: 'after', depends_on: ['op'] },
        ],
      },
      { action: 'wait_for_subagents' },
      (request) => ({ action: 'finish', result: settledChildren(request).map((child) => child.id) }),
    ],
    op: [
      { action: 'call_tool', tool: 'slow', args: {} },
      { action: 'finish', result: 'done' },
    ],
    leaf: [
      { action: 'call_tool', tool: 'note', args: {} },
      { action: 'finish', result: 'noted' },
    ],
  })
  return { agents: [lead, op, leaf], model }
}

/** A Redis store under a prefix of its own and a client to look at its keys; both closed, and the keys removed, after `use`. */
async function withRedisStore(
  use: (harness: {
    store: ReturnType<typeof redisStore>
    redis: ReturnType<typeof openRedis>
    prefix: string
  }) => Promise<void>,
): Promise<void> {
  const prefix = `${uniqueName('cohort-test')}:`
  const store = redisStore({ url: redisUrl, prefix })
  const redis = openRedis()
  try {
    await use({ store, redis, prefix })
  } finally {
    await store.close?.()
    redis.disconnect()
    await deleteKeys(prefix)
  }
}
