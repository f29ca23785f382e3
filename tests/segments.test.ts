import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import {
  type AgentRecord,
  CancelledError,
  type ChatModel,
  createRuntime,
  defineAgent,
  fileStore,
  type Run,
  RunNotFoundError,
  type Runtime,
  scriptedModel,
  sleep,
} from '@cohort/core'
import { afterEach, beforeEach, expect, test, vi } from 'vitest'
import { approvalRuntime } from './fixtures/approval-scenario.js'
import { faultAgents, faultModel } from './fixtures/fault-scenario.js'
import { heldToolAgent } from './fixtures/held-tool.js'

let dir: string
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'cohort-segments-'))
})
afterEach(async () => {
  await rm(dir, { recursive: true, force: true })
})

/**
 * A tiny distributed host, as a job queue would be: each agent runs in segments; a parent that
 * waits on children is run again when one of them settles; a dependent waiting on siblings is
 * retried. `workers` runtimes (separate in-memory states, one shared store) take turns.
 */
async function runDistributed(workers: Runtime[], runId: string, first: string[]): Promise<string[]> {
  const queue = [...first]
  const ran: string[] = []
  let turn = 0
  while (queue.length > 0) {
    const batch = queue.splice(0)
    await Promise.all(
      batch.map(async (agentId) => {
        const worker = workers[turn++ % workers.length]!
        const outcome = await worker.runSegment(runId, agentId, {
          enqueue: async (ids) => {
            queue.push(...ids)
          },
        })
        ran.push(`${agentId}:${outcome.kind === 'settled' ? outcome.result.status : outcome.on}`)
        const parent = agentId.includes('.') ? agentId.slice(0, agentId.lastIndexOf('.')) : undefined
        if (outcome.kind === 'settled' && parent && !queue.includes(parent)) queue.push(parent)
        if (outcome.kind === 'waiting' && outcome.on === 'dependencies') {
          await new Promise((resolve) => setTimeout(resolve, 10))
          queue.push(agentId)
        }
      }),
    )
  }
  return ran
}

test('a run spread over segments in several workers ends as the same run in one process', async () => {
  const expected = await createRuntime({ agents: faultAgents, model: faultModel }).run('lead', 'crash me')

  const store = fileStore(dir)
  const workers = [0, 1, 2].map(() => createRuntime({ agents: faultAgents, model: faultModel, store }))
  const { runId, rootAgentId } = await workers[0]!.prepareRun('lead', 'crash me', { runId: 'spread' })
  expect(rootAgentId).toBe('lead')
  const ran = await runDistributed(workers, runId, [rootAgentId])

  const stored = await store.loadRun(runId)
  expect(stored?.run).toMatchObject({ status: 'completed', result: expected })
  expect(stored?.agents).toHaveLength(11)
  expect(stored?.agents.every((agent) => agent.status === 'completed')).toBe(true)
  // The lead parked while its children ran elsewhere, and every agent settled exactly once.
  expect(ran).toContain('lead:children')
  const settled = ran.filter((line) => line.endsWith(':completed')).map((line) => line.split(':')[0])
  expect(new Set(settled).size).toBe(11)
})

test('a launch replayed after a crash finds its children in the store, where they ran on, and keeps them', async () => {
  const expected = await createRuntime({ agents: faultAgents, model: faultModel }).run('lead', 'crash me')
  const store = fileStore(dir)
  const workers = [0, 1].map(() => createRuntime({ agents: faultAgents, model: faultModel, store }))
  const { runId } = await workers[0]!.prepareRun('lead', 'crash me', { runId: 'replayed' })
  // The lead's record as a crash right after the launch's children were written leaves it:
  // the launch is still pending, its children are not yet the lead's.
  let launched: string[] = []
  let cutOff: AgentRecord | undefined
  const parked = await workers[0]!.runSegment(runId, 'lead', {
    enqueue: async (ids) => {
      launched = ids
      cutOff = await store.loadAgent!(runId, 'lead')
    },
  })
  expect(parked).toEqual({ kind: 'waiting', on: 'children' })
  expect(cutOff?.snapshot.context.children).toEqual([])
  expect(cutOff?.snapshot.context.pending[0]?.action).toBe('launch_subagents')
  await store.saveAgent(runId, cutOff!)

  // The children run on in other workers; the lead, run again when one settles, replays its launch.
  const ran = await runDistributed(workers, runId, launched)
  const stored = await store.loadRun(runId)
  expect(stored?.run).toMatchObject({ status: 'completed', result: expected })
  expect(stored?.agents).toHaveLength(11)
  const settled = ran.filter((line) => line.endsWith(':completed')).map((line) => line.split(':')[0])
  expect(settled.sort()).toEqual(stored!.agents.map((agent) => agent.id).sort())
})

test('a segment of an agent stored mid-call, in a run that has ended since, fails it without calling the model', async () => {
  const store = fileStore(dir)
  const solo = defineAgent({ name: 'solo', instructions: 'Answer.' })
  let calls = 0
  let called!: () => void
  const inFlight = new Promise<void>((resolve) => {
    called = resolve
  })
  const model: ChatModel = {
    name: 'counting',
    complete: () => {
      calls++
      called()
      return new Promise(() => {})
    },
  }
  const first = createRuntime({ agents: [solo], model, store })
  const run = first.start('solo', 'go', { runId: 'ended' })
  await inFlight
  await run.detach()
  expect((await store.loadAgent!('ended', 'solo'))?.snapshot.value).toEqual({ running: 'thinking' })
  const record = await store.loadRunRecord!('ended')
  await store.saveRun({ ...record!, status: 'cancelled', updatedAt: Date.now() })

  const host = createRuntime({ agents: [solo], model, store })
  const outcome = await host.runSegment('ended', 'solo', { enqueue: async () => {} })
  expect(outcome).toMatchObject({ kind: 'settled', result: { status: 'failed' } })
  expect(calls).toBe(1)
  await host.shutdown()
})

test('running a segment of a settled agent again returns its result without running it', async () => {
  const store = fileStore(dir)
  const runtime = createRuntime({ agents: faultAgents, model: faultModel, store })
  await runtime.run('lead', 'crash me', { runId: 'done' })
  const again = await runtime.runSegment('done', 'lead.w1', { enqueue: async () => {} })
  expect(again).toEqual({
    kind: 'settled',
    result: { id: 'lead.w1', agent: 'worker', status: 'completed', result: 'lead.w1 slept 0.05' },
  })
})

test('an agent of a stored run that waits on a person is answered in the store, then runs on anywhere', async () => {
  const waitFor = (run: Run, kind: 'approval' | 'input') =>
    new Promise<string>((resolve) =>
      run.on('agent.suspended', (event) => {
        if (event.awaiting?.kind === kind) resolve(event.awaiting.callId)
      }),
    )
  // The run parks on an approval; its process lets go of it.
  const first = approvalRuntime(dir)
  const run = first.start('operator', 'ship it', { runId: 'asks' })
  const callId = await waitFor(run, 'approval')
  await first.shutdown()

  // Another runtime answers it in the store: a wrong call id is refused and changes nothing.
  const second = approvalRuntime(dir)
  const before = await second.store.loadRun('asks')
  await expect(second.answer('asks', 'operator', { approve: 'call-nope' })).rejects.toThrow(
    'agent operator of run asks is not waiting for approval of call "call-nope" (it waits for approval of call "operator#0.0")',
  )
  await expect(second.answer('asks', 'ghost', { payload: 1 })).rejects.toThrow(
    'run asks has no agent "ghost"',
  )
  expect(await second.store.loadRun('asks')).toEqual(before)
  await second.answer('asks', 'operator', { approve: callId })
  const approved = await second.store.loadAgent!('asks', 'operator')
  expect(approved?.snapshot.value).toEqual({ running: 'acting' })
  expect(approved?.snapshot.context.awaiting).toBeNull()

  // Run on: the tool runs once, then the agent asks for input; that answer goes the same way.
  const resumed = await second.resume('asks')
  await waitFor(resumed, 'input')
  await second.shutdown()
  const third = approvalRuntime(dir)
  await third.answer('asks', 'operator', { payload: 'eu-west' })
  const finished = await (await third.resume('asks')).result
  expect(JSON.stringify(finished)).toContain('eu-west')
  await expect(third.answer('asks', 'operator', { payload: 'late' })).rejects.toThrow(
    'run asks has already completed',
  )
})

test('a segment of an agent stored waiting on a person returns at once: it waits on input', async () => {
  const first = approvalRuntime(dir)
  const run = first.start('operator', 'ship it', { runId: 'parked' })
  await new Promise<void>((resolve) =>
    run.on('agent.suspended', (event) => {
      if (event.awaiting) resolve()
    }),
  )
  await first.shutdown()
  const host = approvalRuntime(dir)
  const outcome = await host.runSegment('parked', 'operator', { enqueue: async () => {} })
  expect(outcome).toEqual({ kind: 'waiting', on: 'input' })
  // Nothing ran: the stored agent still waits for the same approval.
  const stored = await host.store.loadAgent!('parked', 'operator')
  expect(stored?.snapshot.value).toEqual({ suspended: 'external' })
  await host.shutdown()
})

test('a segment whose store stops writing ends with the StoreError, not never: its host can retry it', async () => {
  const files = fileStore(dir)
  let writes = 0
  const failing = {
    ...files,
    saveAgent: async (...args: Parameters<typeof files.saveAgent>) => {
      // The agent's first record is written; the writes of its steps fail, as a database going down does.
      if (++writes > 1) throw new Error('connection terminated')
      return files.saveAgent(...args)
    },
  }
  const sleeper = defineAgent({ name: 'sleeper', instructions: '', tools: [sleep] })
  const model = scriptedModel({
    sleeper: [
      { action: 'call_tool', tool: 'sleep', args: { seconds: 0 } },
      { action: 'finish', result: 'done' },
    ],
  })
  const runtime = createRuntime({ agents: [sleeper], model, store: failing })
  const { runId, rootAgentId } = await runtime.prepareRun('sleeper', 'go')
  const outcome = runtime.runSegment(runId, rootAgentId, { enqueue: async () => {} })
  await expect(outcome).rejects.toThrow(/connection terminated/)
  // What was stored stays: the run, and the agent's last good record.
  expect((await files.loadRun(runId))?.run.status).toBe('running')
})

test('a segment its host lets go of (signal aborted: the job went to another worker) stops, and writes nothing more', async () => {
  const store = fileStore(dir)
  const { agent, model, started, release } = heldToolAgent()
  const runtime = createRuntime({ agents: [agent], model, store })
  const { runId, rootAgentId } = await runtime.prepareRun('solo', 'go')
  const host = new AbortController()
  const outcome = runtime.runSegment(runId, rootAgentId, { enqueue: async () => {}, signal: host.signal })
  await vi.waitFor(() => expect(started()).toBe(true))
  const before = await store.loadAgent!(runId, rootAgentId)
  host.abort(new Error('lost the job'))
  await expect(outcome).rejects.toThrow('lost the job')
  // The tool ends here after all: nothing of it reaches the store, which the other worker owns now.
  release()
  await new Promise((resolve) => setTimeout(resolve, 50))
  expect(await store.loadAgent!(runId, rootAgentId)).toEqual(before)
})

test('runtime.resume refuses a run made for distributed hosts, whose agents they run: it would run them twice', async () => {
  const store = fileStore(dir)
  const { agent, model } = heldToolAgent()
  const runtime = createRuntime({ agents: [agent], model, store })
  const { runId } = await runtime.prepareRun('solo', 'go')
  await expect(runtime.resume(runId)).rejects.toThrow(
    /is run by distributed hosts \(made with prepareRun, as @cohort\/bullmq's enqueueRun does\): continue it there \(resumeRun of @cohort\/bullmq\)/,
  )
  // Refused before anything ran or was claimed: another runtime may still take it.
  expect((await store.loadRun(runId))?.agents.map((agent) => agent.status)).toEqual(['idle'])
  await expect(createRuntime({ agents: [agent], model, store }).resume(runId)).rejects.toThrow(
    /distributed hosts/,
  )
})

test('runtime.cancelStored ends a stored run as cancelled through its agents, without running them; a segment still running does not write over the run record; again, it says the run had ended', async () => {
  const store = fileStore(dir)
  const { agent, model, started, release } = heldToolAgent()
  const worker = createRuntime({ agents: [agent], model, store })
  const { runId, rootAgentId } = await worker.prepareRun('solo', 'go')
  const outcome = worker.runSegment(runId, rootAgentId, { enqueue: async () => {} })
  await vi.waitFor(() => expect(started()).toBe(true))

  const other = createRuntime({ agents: [agent], model, store })
  const cancelled: unknown[] = []
  other.on('run.cancelled', (event) => cancelled.push(event.reason))
  const { record, alreadyEnded } = await other.cancelStored(runId, 'not needed')
  expect(alreadyEnded).toBe(false)
  expect(record).toMatchObject({ status: 'cancelled', error: { code: 'CANCELLED', message: 'not needed' } })
  expect(cancelled).toEqual(['not needed'])
  const stored = await store.loadAgent!(runId, rootAgentId)
  expect(stored).toMatchObject({ status: 'failed', snapshot: { context: { error: { code: 'CANCELLED' } } } })

  // Its segment here was not told (no host signal): its agent ends, but the run stays cancelled.
  release()
  await outcome
  expect(await store.loadRunRecord!(runId)).toMatchObject({ status: 'cancelled' })
  expect(await other.cancelStored(runId)).toEqual({
    record: await store.loadRunRecord!(runId),
    alreadyEnded: true,
  })
  await expect(other.cancelStored('nosuchrun')).rejects.toBeInstanceOf(RunNotFoundError)
})

test("one runtime's calls on a stored run at once end as one of them: a resume then a cancel, a cancel then a resume, two cancels", async () => {
  const store = fileStore(dir)
  /** A run stopped mid-tool by a shutdown; then a new runtime, its tool held anew, to take it up. */
  const stoppedThenTakenUp = async (runId: string) => {
    const first = heldToolAgent()
    const previous = createRuntime({ agents: [first.agent], model: first.model, store })
    previous.start('solo', 'go', { runId })
    await vi.waitFor(() => expect(first.started()).toBe(true))
    await previous.shutdown()
    const next = heldToolAgent()
    return { ...next, runtime: createRuntime({ agents: [next.agent], model: next.model, store }) }
  }

  // A resume first: the run is live when the cancel comes, which is refused; the run goes on.
  const a = await stoppedThenTakenUp('r-a')
  const [resumedA, cancelA] = await Promise.allSettled([
    a.runtime.resume('r-a'),
    a.runtime.cancelStored('r-a', 'stop'),
  ])
  expect(cancelA).toMatchObject({
    status: 'rejected',
    reason: { message: 'run r-a is live in this runtime: use run.cancel' },
  })
  await vi.waitFor(() => expect(a.started()).toBe(true))
  a.release()
  expect(await (resumedA as PromiseFulfilledResult<Run>).value.result).toBe('finished')

  // A cancel first: the resume takes up the cancelled run, and runs nothing.
  const b = await stoppedThenTakenUp('r-b')
  const [cancelB, resumedB] = await Promise.allSettled([
    b.runtime.cancelStored('r-b', 'stop'),
    b.runtime.resume('r-b'),
  ])
  expect(cancelB).toMatchObject({ status: 'fulfilled', value: { alreadyEnded: false } })
  await expect((resumedB as PromiseFulfilledResult<Run>).value.result).rejects.toBeInstanceOf(CancelledError)
  expect(b.started()).toBe(false)
  expect(await store.loadRunRecord!('r-b')).toMatchObject({ status: 'cancelled' })

  // Two cancels: one cancels, the other finds the run ended; the run and its agent give one reason.
  const c = await stoppedThenTakenUp('r-c')
  const both = await Promise.all([
    c.runtime.cancelStored('r-c', 'first'),
    c.runtime.cancelStored('r-c', 'second'),
  ])
  expect(both.map((cancel) => cancel.alreadyEnded)).toEqual([false, true])
  expect(await store.loadRunRecord!('r-c')).toMatchObject({ error: { message: 'first' } })
  expect(await store.loadAgent!('r-c', 'solo')).toMatchObject({
    snapshot: { context: { error: { message: 'first' } } },
  })
})
