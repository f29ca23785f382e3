import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import {
  type ChatModel,
  type CohortEvent,
  createRuntime,
  defineAgent,
  defineTool,
  InvalidInputError,
  memoryStore,
  planLayers,
  type Run,
  type ScriptedReply,
  scriptedModel,
  sleep,
} from '@cohort/core'
import { describe, expect, test } from 'vitest'
import { z } from 'zod'
import { approvalRuntime, executions } from './fixtures/approval-scenario.js'
import { collect, spawnTs } from './support/processes.js'
import { settledResults, waitUntil } from './support/scripts.js'

const worker = defineAgent({ name: 'worker', instructions: 'Sleep as told.', tools: [sleep] })
const lead = defineAgent({ name: 'lead', instructions: 'Coordinate.', subagents: [worker] })

/** A worker whose task is the seconds to sleep; it finishes with `<task> done` (and the context it got). */
const sleepingWorker = [
  (request: { agent: { task: string } }) => ({
    action: 'call_tool',
    tool: 'sleep',
    args: { seconds: Number(request.agent.task.split(' ')[0]) },
  }),
  (request: { agent: { task: string; id: string } }) => ({
    action: 'finish',
    result: `${request.agent.id} done`,
  }),
] as const

function eventLog(run: { on: (type: 'event', fn: (e: CohortEvent) => void) => unknown }) {
  const events: CohortEvent[] = []
  run.on('event', (event) => events.push(event))
  const index = (type: string, agentId: string) =>
    events.findIndex((e) => e.type === type && 'agentId' in e && e.agentId === agentId)
  return { events, index }
}

describe('depends_on', () => {
  test('a dependent starts as soon as its own dependencies complete, with their results, not after the layer', async () => {
    const seenContext: string[] = []
    const model = scriptedModel({
      worker: (request) => {
        if (request.agent.id.endsWith('.c') && request.turn === 0)
          seenContext.push(request.messages.at(-1)!.content)
        return (sleepingWorker[request.turn] ?? sleepingWorker[1])(request) as ScriptedReply
      },
    })
    const runtime = createRuntime({ agents: [worker], model })
    const run = runtime.runPlan({
      agents: [
        { id: 'a', agent: 'worker', task: '0.1 s' },
        { id: 'b', agent: 'worker', task: '0.6 s' },
        { id: 'c', agent: 'worker', task: '0.1 s', depends_on: ['a'] },
      ],
    })
    const { index } = eventLog(run)
    expect(await run.result).toEqual({
      a: 'cohort-plan.a done',
      b: 'cohort-plan.b done',
      c: 'cohort-plan.c done',
    })
    const id = (local: string) => `cohort-plan.${local}`
    expect(index('agent.started', id('c'))).toBeGreaterThan(index('agent.completed', id('a')))
    expect(index('agent.started', id('c'))).toBeLessThan(index('agent.completed', id('b')))
    expect(index('agent.completed', id('c'))).toBeLessThan(index('agent.completed', id('b')))
    expect(seenContext[0]).toMatch(
      /Results of the agents you depend on: \[\{"id":"a".*"result":"cohort-plan.a done"/,
    )
  })

  test('the plan layers are available for display', () => {
    expect(
      planLayers({
        agents: [
          { id: 'r1', agent: 'worker', task: 't' },
          { id: 'r2', agent: 'worker', task: 't' },
          { id: 'analyst', agent: 'worker', task: 't', depends_on: ['r1', 'r2'] },
          { id: 'writer', agent: 'worker', task: 't', depends_on: ['analyst'] },
        ],
      }),
    ).toEqual([['r1', 'r2'], ['analyst'], ['writer']])
  })

  test("planLayers and runPlan throw a cyclic plan's cycle, instead of returning [] or starting a run", async () => {
    const cyclic = {
      agents: [
        { id: 'a', agent: 'worker', task: '0 s' },
        { id: 'x', agent: 'worker', task: '0 s', depends_on: ['y'] },
        { id: 'y', agent: 'worker', task: '0 s', depends_on: ['x'] },
      ],
    }
    const thrown = (() => {
      try {
        planLayers(cyclic)
      } catch (error) {
        return error
      }
    })()
    expect(thrown).toBeInstanceOf(InvalidInputError)
    expect((thrown as Error).message).toMatch(/dependency cycle x → y → x/)
    // runPlan refuses it as it refuses any other invalid plan: at once, before anything is stored.
    const model = scriptedModel({ worker: [...sleepingWorker] })
    const store = memoryStore()
    expect(() => createRuntime({ agents: [worker], model, store }).runPlan(cyclic)).toThrow(
      new InvalidInputError(
        "invalid plan: dependency cycle x → y → x; remove one of these depends_on, or set onCycle: 'sequential'",
      ),
    )
    expect(await store.listRuns()).toEqual([])
    // With onCycle 'sequential' there is no error: one agent a layer, in plan order.
    expect(planLayers({ ...cyclic, onCycle: 'sequential' })).toEqual([['a'], ['x'], ['y']])
    // An id used twice is refused by both, as runPlan refuses it.
    const twice = { agents: [cyclic.agents[0]!, cyclic.agents[0]!] }
    expect(() => planLayers(twice)).toThrow(new InvalidInputError('invalid plan: id "a" is used twice'))
    // A model's launch may name a sibling by position; a plan given as data names steps by id.
    const byPosition = {
      agents: [cyclic.agents[0]!, { id: 'b', agent: 'worker', task: 't', depends_on: [0] }],
    }
    expect(() => planLayers(byPosition as never)).toThrow(
      new InvalidInputError(
        'invalid plan: agents.1.depends_on.0: expected the id of another step, got number 0: a plan names the steps it depends on by their id, not by position',
      ),
    )
    // The runtime's onCycle is the plan's when the plan does not say.
    const sequential = createRuntime({ agents: [worker], model, store, onCycle: 'sequential' })
    expect(Object.keys((await sequential.runPlan(cyclic).result) as object)).toEqual(['a', 'x', 'y'])
  })

  test('runPlan refuses a plan its limits could never run, at once and storing nothing', async () => {
    const model = scriptedModel({ worker: [...sleepingWorker] })
    const store = memoryStore()
    const steps = (count: number) => ({
      agents: Array.from({ length: count }, (_, i) => ({ id: `s${i}`, agent: 'worker', task: '0 s' })),
    })
    const runtime = createRuntime({ agents: [worker], model, store, limits: { maxAgents: 10 } })
    expect(() => runtime.runPlan(steps(10))).toThrow(
      new InvalidInputError(
        "invalid plan: 10 steps and the run's root are 11 agents, past limits.maxAgents (10); raise it, or split the plan",
      ),
    )
    const shallow = createRuntime({ agents: [worker], model, store, limits: { maxDepth: 0 } })
    expect(() => shallow.runPlan(steps(1))).toThrow(
      new InvalidInputError(
        'invalid plan: its steps run at depth 1, past limits.maxDepth (0); raise it to 1 or more',
      ),
    )
    // Its steps are one launch: refused past maxChildrenPerLaunch, as a model's launch of that size is.
    const narrow = createRuntime({ agents: [worker], model, store, limits: { maxChildrenPerLaunch: 2 } })
    expect(() => narrow.runPlan(steps(3))).toThrow(
      new InvalidInputError(
        'invalid plan: its 3 steps are launched at once, past limits.maxChildrenPerLaunch (2); raise it, or split the plan',
      ),
    )
    expect(await store.listRuns()).toEqual([])
    expect(Object.keys((await runtime.runPlan(steps(9)).result) as object)).toHaveLength(9)
    expect(Object.keys((await narrow.runPlan(steps(2)).result) as object)).toHaveLength(2)
  })

  test("a model's depends_on may name agents of the same launch by position (0 for the first), as the seeds' executor did; a wrong position is refused with the reason", async () => {
    const given: string[] = []
    const told: string[] = []
    const model = scriptedModel({
      lead: [
        {
          action: 'launch_subagents',
          agents: [
            { agent: 'worker', task: '0 s', depends_on: [0] },
            { agent: 'worker', task: '0 s', depends_on: [3] },
            { agent: 'worker', task: '0 s', depends_on: [true] },
          ],
        } as never,
        (request) => {
          told.push(request.messages.at(-1)!.content)
          return {
            action: 'launch_subagents',
            agents: [
              { agent: 'worker', task: 'a', id: 'left' },
              { agent: 'worker', task: 'b' },
              { agent: 'worker', task: 'join', id: 'join', depends_on: [0, 1] },
            ],
          } as never
        },
        { action: 'wait_for_subagents' },
        (request) => ({ action: 'finish', result: settledResults(request).map((child) => child.id) }),
      ],
      worker: [
        (request) => {
          if (request.agent.task === 'join') given.push(request.messages.map((m) => m.content).join('\n'))
          return { action: 'finish', result: `done ${request.agent.task}` }
        },
      ],
    })
    expect(await createRuntime({ agents: [lead, worker], model }).run('lead', 'go')).toEqual([
      'left',
      'worker-2',
      'join',
    ])
    expect(told[0]).toMatch(
      /agents\[0\]: depends_on 0 is this agent itself; expected the position of another agent of it, from 0/,
    )
    // The join ran after both, given their results by the ids they were given or made.
    expect(given[0]).toMatch(/"id":"left".*"result":"done a".*"id":"worker-2".*"result":"done b"/s)
  })

  test('a cycle is refused to the model with the cycle named', async () => {
    const seen: string[] = []
    const model = scriptedModel({
      lead: [
        {
          action: 'launch_subagents',
          agents: [
            { agent: 'worker', task: '0 s', id: 'x', depends_on: ['y'] },
            { agent: 'worker', task: '0 s', id: 'y', depends_on: ['x'] },
          ],
        },
        (request) => {
          seen.push(request.messages.at(-1)!.content)
          return { action: 'finish', result: 'gave up' }
        },
      ],
      worker: [...sleepingWorker],
    })
    expect(await createRuntime({ agents: [lead, worker], model }).run('lead', 'go')).toBe('gave up')
    expect(seen[0]).toMatch(/launch refused: dependency cycle x → y → x/)
  })

  test("with onCycle 'sequential' a cycle runs in launch order, with a warning", async () => {
    const model = scriptedModel({ worker: [...sleepingWorker] })
    const runtime = createRuntime({ agents: [worker], model })
    const run = runtime.runPlan({
      onCycle: 'sequential',
      agents: [
        { id: 'x', agent: 'worker', task: '0.05 s', depends_on: ['y'] },
        { id: 'y', agent: 'worker', task: '0.05 s', depends_on: ['x'] },
      ],
    })
    const { events, index } = eventLog(run)
    await run.result
    expect(events.find((e) => e.type === 'agent.warning')).toMatchObject({
      message: expect.stringMatching(
        /dependency cycle x → y → x: running every agent of this launch one after another/,
      ),
    })
    expect(index('agent.started', 'cohort-plan.y')).toBeGreaterThan(index('agent.completed', 'cohort-plan.x'))
  })

  test("with onCycle 'sequential' each agent is handed the results of its own depends_on that ran before it, not its predecessor's", async () => {
    const firstMessage = new Map<string, string>()
    const model = scriptedModel({
      worker: (request) => {
        if (request.turn === 0) firstMessage.set(request.agent.id, request.messages.at(-1)!.content)
        if (request.agent.id.endsWith('.bad')) return 'no json'
        return (sleepingWorker[request.turn] ?? sleepingWorker[1])(request) as ScriptedReply
      },
    })
    const runtime = createRuntime({ agents: [worker], model, limits: { maxRepairs: 0 } })
    const plan = {
      onCycle: 'sequential' as const,
      agents: [
        { id: 'a', agent: 'worker', task: '0 s', depends_on: ['c'] },
        { id: 'b', agent: 'worker', task: '0 s' },
        { id: 'c', agent: 'worker', task: '0 s', depends_on: ['a'] },
      ],
    }
    expect(planLayers(plan)).toEqual([['a'], ['b'], ['c']])
    const run = runtime.runPlan(plan)
    const { events, index } = eventLog(run)
    expect(await run.result).toEqual({
      a: 'cohort-plan.a done',
      b: 'cohort-plan.b done',
      c: 'cohort-plan.c done',
    })
    // Still one after another in launch order.
    expect(index('agent.started', 'cohort-plan.b')).toBeGreaterThan(index('agent.completed', 'cohort-plan.a'))
    expect(index('agent.started', 'cohort-plan.c')).toBeGreaterThan(index('agent.completed', 'cohort-plan.b'))
    // c gets what it asked for (a), not b; b asked for nothing; a's depends_on on c, which runs later, is dropped.
    expect(firstMessage.get('cohort-plan.c')).toMatch(
      /Results of the agents you depend on: \[\{"id":"a".*"result":"cohort-plan.a done"\}\]$/,
    )
    expect(firstMessage.get('cohort-plan.c')).not.toContain('cohort-plan.b done')
    expect(firstMessage.get('cohort-plan.b')).toBe('0 s')
    expect(firstMessage.get('cohort-plan.a')).toBe('0 s')
    expect(events.find((e) => e.type === 'agent.warning')).toMatchObject({
      message:
        'dependency cycle a → c → a: running every agent of this launch one after another, in launch order (one that fails fails those after it); dropped, as they name an agent that runs later: depends_on "c" of "a"',
    })

    // One that fails still fails those after it, whether they depend on it or not.
    const failing = runtime.runPlan({
      ...plan,
      agents: [plan.agents[0]!, { ...plan.agents[1]!, id: 'bad' }, plan.agents[2]!],
    })
    expect(await failing.result).toMatchObject({
      a: 'cohort-plan.a done',
      bad: { error: { code: 'PARSE_ERROR' } },
      c: {
        error: { code: 'DEPENDENCY_FAILED', message: expect.stringMatching(/^"bad", run before it, failed/) },
      },
    })
  })

  test('invalid dependency ids are dropped with a warning event, and the agent runs', async () => {
    const model = scriptedModel({ worker: [...sleepingWorker] })
    const run = createRuntime({ agents: [worker], model }).runPlan({
      agents: [{ id: 'a', agent: 'worker', task: '0 s', depends_on: ['ghost'] }],
    })
    const { events } = eventLog(run)
    expect(await run.result).toEqual({ a: 'cohort-plan.a done' })
    const warnings = events
      .filter((e) => e.type === 'agent.warning')
      .map((e) => (e as { message: string }).message)
    expect(warnings).toEqual(['depends_on "ghost" of "a" names no sibling; dropped'])
  })

  test('an agent that depends on itself is a cycle of one: refused by planLayers, runPlan and a launch, unless sequential', async () => {
    const selfish = { agents: [{ id: 'a', agent: 'worker', task: '0 s', depends_on: ['a'] }] }
    const refusal = new InvalidInputError(
      "invalid plan: dependency cycle a → a; remove one of these depends_on, or set onCycle: 'sequential'",
    )
    expect(() => planLayers(selfish)).toThrow(refusal)
    const seen: string[] = []
    const model = scriptedModel({
      lead: [
        {
          action: 'launch_subagents',
          agents: [{ agent: 'worker', task: '0 s', id: 'a', depends_on: ['a'] }],
        },
        (request) => {
          seen.push(request.messages.at(-1)!.content)
          return { action: 'finish', result: 'gave up' }
        },
      ],
      worker: [...sleepingWorker],
    })
    const store = memoryStore()
    const runtime = createRuntime({ agents: [lead, worker], model, store })
    expect(() => runtime.runPlan(selfish)).toThrow(refusal)
    expect(await store.listRuns()).toEqual([])
    expect(await runtime.run('lead', 'go')).toBe('gave up')
    expect(seen[0]).toMatch(/launch refused: dependency cycle a → a/)
    // Run in order, the agent runs, its depends_on on itself dropped.
    const sequential = { ...selfish, onCycle: 'sequential' as const }
    expect(planLayers(sequential)).toEqual([['a']])
    expect(await runtime.runPlan(sequential).result).toEqual({ a: 'cohort-plan.a done' })
  })

  test('a dependent of a failed agent fails with the reason; its siblings go on', async () => {
    const model = scriptedModel({
      worker: (request) =>
        request.agent.id.endsWith('.bad')
          ? 'no json'
          : ((sleepingWorker[request.turn] ?? sleepingWorker[1])(request) as ScriptedReply),
    })
    const run = createRuntime({ agents: [worker], model, limits: { maxRepairs: 0 } }).runPlan({
      agents: [
        { id: 'bad', agent: 'worker', task: '0 s' },
        { id: 'after', agent: 'worker', task: '0 s', depends_on: ['bad'] },
        { id: 'other', agent: 'worker', task: '0 s' },
      ],
    })
    const result = (await run.result) as Record<string, unknown>
    expect(result.other).toBe('cohort-plan.other done')
    expect(result.after).toMatchObject({
      error: { code: 'DEPENDENCY_FAILED', message: expect.stringMatching(/"bad" failed/) },
    })
  })
})

describe('scheduler', () => {
  test('the concurrency limit holds: never more model calls in flight than allowed', async () => {
    let inFlight = 0
    let observed = 0
    const model = scriptedModel(async (request) => {
      if (request.agent.name === 'cohort-plan') return '{"action":"finish","result":null}'
      inFlight++
      observed = Math.max(observed, inFlight)
      await new Promise((resolve) => setTimeout(resolve, 15))
      inFlight--
      return request.turn < 2
        ? { action: 'call_tool', tool: 'sleep', args: { seconds: 0 } }
        : { action: 'finish', result: 1 }
    })
    const quick = defineAgent({ name: 'quick', instructions: '', tools: [sleep], model })
    const runtime = createRuntime({ agents: [quick], model, scheduler: { maxConcurrentModelCalls: 2 } })
    const run = runtime.runPlan({
      agents: Array.from({ length: 6 }, (_, i) => ({ id: `q${i}`, agent: 'quick', task: 't' })),
    })
    await run.result
    expect(observed).toBe(2)
    expect(runtime.metrics().modelCalls.maxInFlight).toBe(2)
  })

  test("an agent's timeout does not count the time it waits for a place (maxConcurrentAgents), as cohort parallel --max-parallel --timeout needs", async () => {
    const { boss, worker, model } = fourWorkers({ timeoutMs: 300, latencyMs: 150 })
    // One at a time, 150 ms each: the last waits 450 ms for its place, far past its 300 ms timeout.
    const runtime = createRuntime({
      agents: [boss, worker],
      model,
      scheduler: { maxConcurrentAgents: 1 },
    })
    const run = runtime.start('boss', 'go')
    const timedOut: string[] = []
    run.on('agent.failed', (event) => timedOut.push(`${event.agentId}: ${event.error.message}`))
    const workers = await run.result.then(async () =>
      (await run.snapshot()).agents.filter((a) => a.id !== 'boss'),
    )
    expect(timedOut).toEqual([])
    expect(workers.map((agent) => [agent.id, agent.status])).toEqual([
      ['boss.w0', 'completed'],
      ['boss.w1', 'completed'],
      ['boss.w2', 'completed'],
      ['boss.w3', 'completed'],
    ])
  })

  test('a run detached while an agent waits for a place gives that wait back to its timeout when resumed', async () => {
    const { boss, worker, model } = fourWorkers({ timeoutMs: 900, latencyMs: 300 })
    const store = memoryStore()
    const runtime = () =>
      createRuntime({ agents: [boss, worker], model, store, scheduler: { maxConcurrentAgents: 1 } })
    const first = runtime().start('boss', 'go')
    // One at a time, 300 ms each: w3 has waited about 750 ms of its 900 when the run stops.
    await new Promise<void>((resolve) =>
      first.on('agent.completed', (event) => event.agentId === 'boss.w1' && resolve()),
    )
    await new Promise((resolve) => setTimeout(resolve, 150))
    await first.detach()
    const resumed = await runtime().resume(first.id)
    const failed: string[] = []
    resumed.on('agent.failed', (event) => failed.push(`${event.agentId}: ${event.error.message}`))
    expect(await resumed.result).toBe('done')
    expect(failed).toEqual([])
  })

  test('a cancel or a detach starts no tool call that waited for a place (it would run twice after a resume)', async () => {
    const started: string[] = []
    const effect = defineTool({
      name: 'effect',
      description: 'a side effect',
      parameters: z.object({}),
      execute: async (_args, ctx) => {
        started.push(ctx.agentId)
        await new Promise((resolve) => setTimeout(resolve, 400))
        return 'done'
      },
    })
    const worker = defineAgent({ name: 'worker', instructions: '', tools: [effect] })
    const boss = defineAgent({ name: 'boss', instructions: '', subagents: [worker] })
    const model = scriptedModel({
      boss: [
        {
          action: 'launch_subagents',
          agents: [
            { agent: 'worker', task: 'one', id: 'a' },
            { agent: 'worker', task: 'two', id: 'b' },
          ],
        },
        { action: 'wait_for_subagents' },
        { action: 'finish', result: 'done' },
      ],
      worker: [
        { action: 'call_tool', tool: 'effect', args: {} },
        { action: 'finish', result: 'ok' },
      ],
    })
    const store = memoryStore()
    const runtime = () =>
      createRuntime({ agents: [boss, worker], model, store, scheduler: { maxConcurrentAgents: 1 } })
    // The first tool call runs (400 ms); the other agent's has queued for the place a moment after.
    const toolStarted = async (run: Run) => {
      await new Promise<void>((resolve) => run.on('tool.started', () => resolve()))
      await new Promise((resolve) => setTimeout(resolve, 100))
    }

    const cancelled = runtime().start('boss', 'go')
    await toolStarted(cancelled)
    cancelled.cancel()
    await expect(cancelled.result).rejects.toMatchObject({ code: 'CANCELLED' })
    await new Promise((resolve) => setTimeout(resolve, 50))
    expect(started).toHaveLength(1)

    started.length = 0
    const detached = runtime().start('boss', 'go')
    await toolStarted(detached)
    await detached.detach()
    await new Promise((resolve) => setTimeout(resolve, 50))
    expect(started).toHaveLength(1)
    const cutOff = started[0]
    // The call cut off runs again; the one that was waiting runs for the first time.
    expect(await (await runtime().resume(detached.id)).result).toBe('done')
    expect(started).toHaveLength(3)
    expect(started.filter((id) => id === cutOff)).toHaveLength(2)
  })

  test('maxConcurrentAgents holds for agents at work, tool calls included; a parent waiting on its children holds no place', async () => {
    let working = 0
    let observed = 0
    const nap = defineTool({
      name: 'nap',
      description: 'naps',
      parameters: z.object({}),
      execute: async () => {
        working++
        observed = Math.max(observed, working)
        await new Promise((resolve) => setTimeout(resolve, 60))
        working--
        return 'rested'
      },
    })
    const napper = defineAgent({ name: 'napper', instructions: '', tools: [nap] })
    const boss = defineAgent({ name: 'boss', instructions: '', subagents: [napper] })
    const model = scriptedModel({
      boss: [
        {
          action: 'launch_subagents',
          agents: Array.from({ length: 6 }, (_, i) => ({ agent: 'napper', task: 'nap', id: `n${i}` })),
        },
        { action: 'wait_for_subagents' },
        { action: 'finish', result: 'all rested' },
      ],
      napper: [
        { action: 'call_tool', tool: 'nap', args: {} },
        { action: 'finish', result: 'ok' },
      ],
    })
    // One place is the boss's while it thinks; it gives it back while it waits, or no napper could go.
    const runtime = createRuntime({ agents: [boss, napper], model, scheduler: { maxConcurrentAgents: 2 } })
    const started = performance.now()
    const during = runtime.run('boss', 'go')
    // While some wait for a place, the places are all taken: what `runtime.metrics()` shows.
    await waitUntil(() => (runtime.metrics().atWork?.queued ?? 0) > 0)
    expect(runtime.metrics().atWork).toMatchObject({ working: 2, limit: 2 })
    expect(await during).toBe('all rested')
    expect(runtime.metrics().atWork).toEqual({ working: 0, queued: 0, limit: 2 })
    expect(observed).toBe(2)
    // Six naps of 60 ms, two at a time: three rounds.
    expect(performance.now() - started).toBeGreaterThanOrEqual(170)

    // Infinity is no limit, as everywhere.
    const unbounded = { maxConcurrentAgents: Infinity, rateLimits: { m: { requestsPerMinute: Infinity } } }
    expect(() => createRuntime({ agents: [boss, napper], model, scheduler: unbounded })).not.toThrow()
    // A typo is no limit: refused, not ignored.
    expect(() =>
      createRuntime({ agents: [boss, napper], model, scheduler: { maxConcurrentCalls: 2 } as never }),
    ).toThrow(/invalid scheduler option/)
    expect(() => defineAgent({ name: 'odd', instructions: '', priority: Number.NaN })).toThrow(
      /priority must be a finite number/,
    )
    // runPlan's own root takes two turns, whatever maxSteps allows each step.
    const planner = createRuntime({ agents: [napper], model, limits: { maxSteps: 1 } })
    expect(await planner.runPlan({ agents: [{ id: 'solo', agent: 'napper', task: 'nap' }] }).result).toEqual({
      solo: { error: expect.objectContaining({ code: 'LIMIT_EXCEEDED' }) },
    })
    for (const scheduler of [
      { maxConcurrentModelCalls: 0 },
      { maxConcurrentAgents: 1.5 },
      { startIntervalMs: -1 },
    ]) {
      expect(() => createRuntime({ agents: [boss, napper], model, scheduler })).toThrow(
        /invalid scheduler option (maxConcurrentModelCalls|maxConcurrentAgents|startIntervalMs)/,
      )
    }
  })

  test.each([
    ['maxConcurrentModelCalls', { maxConcurrentModelCalls: 1 }],
    ['maxConcurrentAgents', { maxConcurrentAgents: 2 }],
  ])(
    '%s: model calls are served by priority, the first free places too, first come first served within one',
    async (_, scheduler) => {
      const order: string[] = []
      const model = scriptedModel(
        (request) => {
          if (request.turn === 0) order.push(request.agent.id.replace('cohort-plan.', ''))
          return { action: 'finish', result: request.agent.task }
        },
        { latencyMs: 20 },
      )
      const runtime = createRuntime({ agents: [worker], model, scheduler })
      const run = runtime.runPlan({
        agents: [
          { id: 'none', agent: 'worker', task: 't' },
          { id: 'low', agent: 'worker', task: 't', priority: 1 },
          { id: 'high', agent: 'worker', task: 't', priority: 5 },
          { id: 'mid-a', agent: 'worker', task: 't', priority: 3 },
          { id: 'mid-b', agent: 'worker', task: 't', priority: 3 },
        ],
      })
      await run.result
      expect(order).toEqual(['high', 'mid-a', 'mid-b', 'low', 'none'])
    },
  )

  test('a per-model request limit spaces calls out', async () => {
    const starts: number[] = []
    const model = scriptedModel((request) => {
      if (request.agent.name !== 'cohort-plan') starts.push(performance.now())
      return { action: 'finish', result: 1 }
    })
    const quick = defineAgent({ name: 'quick', instructions: '', model: { ...model, name: 'limited' } })
    const runtime = createRuntime({
      agents: [quick],
      model,
      scheduler: { rateLimits: { limited: { requestsPerMinute: 2 } } },
    })
    const run = runtime.runPlan({
      agents: [0, 1, 2].map((i) => ({ id: `q${i}`, agent: 'quick', task: 't' })),
    })
    // Two a minute is one every 30 s: one call passes, the others would wait; cancel instead.
    await new Promise((resolve) => setTimeout(resolve, 300))
    expect(starts).toHaveLength(1)
    expect(runtime.metrics().modelCalls.queued).toBe(2)
    await run.cancel()
    expect(runtime.metrics().modelCalls.queued).toBe(0)
  })
})

describe('timeouts and budgets', () => {
  test('a child past its timeout fails with TimeoutError, its sibling goes on, and the parent gets the fallback', async () => {
    const model = scriptedModel({
      lead: [
        {
          action: 'launch_subagents',
          agents: [
            { agent: 'worker', task: '5 s', id: 'slow', timeout_ms: 100, fallback: 'no data' },
            { agent: 'worker', task: '5 s', id: 'slow-strict', timeout_ms: 100 },
            { agent: 'worker', task: '0.2 s', id: 'fine' },
          ],
        },
        { action: 'wait_for_subagents' },
        (request) => ({ action: 'finish', result: settledResults(request) }),
      ],
      worker: [...sleepingWorker],
    })
    const runtime = createRuntime({ agents: [lead, worker], model })
    const run = runtime.start('lead', 'go')
    const started = performance.now()
    const results = (await run.result) as {
      id: string
      status: string
      result?: unknown
      error?: { code: string }
    }[]
    expect(performance.now() - started).toBeLessThan(3000)
    expect(results.find((r) => r.id === 'slow')).toMatchObject({
      status: 'completed',
      result: 'no data',
      fallback: true,
      error: { code: 'TIMEOUT' },
    })
    expect(results.find((r) => r.id === 'slow-strict')).toMatchObject({
      status: 'failed',
      error: { code: 'TIMEOUT' },
    })
    expect(results.find((r) => r.id === 'fine')).toMatchObject({
      status: 'completed',
      result: 'lead.fine done',
    })
    const metrics = run.metrics()
    expect(metrics).toMatchObject({ timeouts: 2, errors: 2, agents: 4 })
    // The time of a tool call a timeout cut off is busy time: the agents were at work for it.
    for (const id of ['lead.slow', 'lead.slow-strict']) {
      const busyMs = metrics.perAgent.find((agent) => agent.id === id)?.busyMs
      expect(busyMs, id).toBeGreaterThanOrEqual(80)
      expect(busyMs, id).toBeLessThan(1000)
    }
    // The runtime's totals, added up as the run settled, agree with the run's own metrics.
    expect(runtime.metrics()).toMatchObject({
      runs: { active: 0, completed: 1 },
      agents: metrics.agents,
      timeouts: metrics.timeouts,
      errors: metrics.errors,
      retries: metrics.retries,
      tokens: metrics.tokens.total,
      cost: metrics.cost,
      // As the seeds' executors report them: rates over the agents, the mean speedup, each run.
      timeoutRate: 0.5,
      errorRate: 0.5,
      history: [{ runId: run.id, status: 'completed', agents: 4, timeouts: 2, errors: 2 }],
    })
    expect(runtime.metrics().averageSpeedup).toBeCloseTo(metrics.speedup, 1)
    expect(runtime.metrics().history[0]!.speedup).toBeCloseTo(metrics.speedup, 1)
  })

  test("a runtime-wide timeoutMs bounds each step of a plan, not the plan's own root", async () => {
    const runtime = createRuntime({
      agents: [worker],
      model: scriptedModel({ worker: [...sleepingWorker] }),
      limits: { timeoutMs: 300 },
    })
    const run = runtime.runPlan({
      agents: [
        { id: 'slow', agent: 'worker', task: '1 s' },
        { id: 'fast', agent: 'worker', task: '0.1 s' },
      ],
    })
    expect(await run.result).toEqual({
      slow: { error: expect.objectContaining({ code: 'TIMEOUT' }) },
      fast: 'cohort-plan.fast done',
    })
  })

  test('an agent over its token budget fails with the reason', async () => {
    const model = scriptedModel({
      worker: () => ({
        text: '{"action":"call_tool","tool":"sleep","args":{"seconds":0}}',
        usage: { promptTokens: 60, completionTokens: 10 },
      }),
    })
    const runtime = createRuntime({ agents: [worker], model, limits: { maxAgentTokens: 150 } })
    const run = runtime.start('worker', 'spend')
    await expect(run.result).rejects.toThrow(/used 210 tokens, over its budget of 150 \(maxAgentTokens\)/)
    // The call that went over is counted: its tokens were spent.
    expect(run.metrics().tokens.total).toBe(210)
    const stored = await runtime.store.loadAgent?.(run.id, 'worker')
    expect(stored?.snapshot.context.usage).toMatchObject({ promptTokens: 180, completionTokens: 30 })
    expect(stored?.status).toBe('failed')
  })

  test('a run at its token budget fails the agent whose next call would cross it; its parent sees the failure', async () => {
    const model = scriptedModel({
      lead: [
        { action: 'launch_subagents', agents: [{ agent: 'worker', task: '0 s', id: 'w' }] },
        { action: 'wait_for_subagents' },
        (request) => ({ action: 'finish', result: settledResults(request) }),
      ],
      worker: () => ({
        text: '{"action":"call_tool","tool":"sleep","args":{"seconds":0}}',
        usage: { promptTokens: 100, completionTokens: 0 },
      }),
    })
    // The worker goes on until its next call would not fit (its estimate: its prompt, at least 100).
    const runtime = createRuntime({ agents: [lead, worker], model, limits: { maxRunTokens: 2500 } })
    const results = (await runtime.run('lead', 'go')) as {
      id: string
      status: string
      error?: { message: string }
    }[]
    expect(results).toMatchObject([{ id: 'w', status: 'failed' }])
    expect(results[0]!.error!.message).toMatch(/would pass its budget of 2500 \(maxRunTokens\)/)
  })
})

describe('human in the loop', () => {
  test('approval and input survive a SIGKILL and a restore in a new process', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'cohort-approval-'))
    const child = spawnTs('tests/fixtures/approval-scenario.ts', [dir, 'hitl-1'])
    let callId = ''
    await collect(child, (line) => {
      const match = /^event agent.suspended (\S+)$/.exec(line)
      if (match) {
        callId = match[1]!
        // Give the suspended record a moment to be written, then crash.
        setTimeout(() => child.kill('SIGKILL'), 100)
      }
    })
    expect(callId).toBe('operator#0.0')

    const runtime = approvalRuntime(dir)
    const run = await runtime.resume('hitl-1')
    expect((await run.snapshot()).agents[0]).toMatchObject({ status: 'suspended' })
    expect(executions).toEqual([])
    const suspended = new Promise<CohortEvent>((resolve) => run.on('agent.suspended', resolve))
    expect(() => run.approve('operator', 'no-such-call')).toThrow(
      /agent operator of run hitl-1 is not waiting for approval of call "no-such-call"/,
    )
    run.approve('operator', callId)
    const asking = await suspended
    expect(asking).toMatchObject({ awaiting: { kind: 'input', prompt: 'which region?' } })
    expect(executions).toEqual(['deploy api'])
    run.resume('operator', 'eu-west')
    expect(await run.result).toEqual([
      '[call_tool deploy] deployed api',
      '[call_tool ask] {"question":"which region?","answer":"eu-west"}',
    ])
    expect(executions).toEqual(['deploy api', 'asked which region?'])
    await rm(dir, { recursive: true, force: true })
  })

  test('a rejected call is reported to the model, which goes on', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'cohort-reject-'))
    const run = approvalRuntime(dir).start('operator', 'ship it')
    const suspended = await new Promise<CohortEvent>((resolve) => run.on('agent.suspended', resolve))
    run.reject('operator', (suspended as { awaiting: { callId: string } }).awaiting.callId, 'not on a Friday')
    const asking = await new Promise<CohortEvent>((resolve) => run.on('agent.suspended', resolve))
    expect(asking).toMatchObject({ awaiting: { kind: 'input' } })
    run.resume('operator', 'us-east')
    const result = (await run.result) as string[]
    expect(result[0]).toBe('[call_tool deploy] rejected: not on a Friday')
    await rm(dir, { recursive: true, force: true })
  })
})

describe('messages', () => {
  test('send_message reaches a sibling on its next turn, and run.send delivers from outside', async () => {
    const seen: Record<string, string[]> = {}
    const model = scriptedModel(
      (request) => {
        const id = request.agent.id
        seen[id] = request.messages.filter((m) => m.content.includes('[message from')).map((m) => m.content)
        if (request.agent.name === 'lead') {
          if (request.turn === 0) {
            return {
              action: 'launch_subagents',
              agents: [
                { agent: 'worker', task: 'talker', id: 'talker' },
                { agent: 'worker', task: 'listener', id: 'listener' },
              ],
            }
          }
          if (request.turn === 1) return { action: 'wait_for_subagents' }
          return { action: 'finish', result: settledResults(request).map((r) => r.result) }
        }
        if (request.agent.task === 'talker') {
          return request.turn === 0
            ? { action: 'send_message', to: 'listener', text: 'the answer is 42' }
            : { action: 'finish', result: 'told' }
        }
        if (request.turn < 3) return { action: 'call_tool', tool: 'sleep', args: { seconds: 0.05 } }
        return { action: 'finish', result: seen[id]!.join(' | ') }
      },
      { latencyMs: 5 },
    )
    const runtime = createRuntime({ agents: [lead, worker], model, store: memoryStore() })
    const run = runtime.start('lead', 'go')
    await new Promise<void>((resolve) =>
      run.on('agent.started', (e) => e.agentId === 'lead.listener' && resolve()),
    )
    run.send('lead.listener', 'hello from outside')
    const result = (await run.result) as string[]
    expect(result[0]).toBe('told')
    expect(result[1]).toContain('[message from lead.talker] the answer is 42')
    expect(result[1]).toContain('[message from user] hello from outside')
    expect(() => run.send('lead.listener', 'too late')).toThrow(/has already completed|no agent/)
  })
})

describe('metrics', () => {
  test('a parallel run reports wall time, busy time, speedup and per-agent timings', async () => {
    const model = scriptedModel({ worker: [...sleepingWorker] })
    const runtime = createRuntime({ agents: [worker], model })
    const run = runtime.runPlan({
      agents: [0, 1, 2].map((i) => ({ id: `w${i}`, agent: 'worker', task: '0.3 s' })),
    })
    await run.result
    const metrics = run.metrics()
    expect(metrics.status).toBe('completed')
    expect(metrics.agents).toBe(4)
    expect(metrics.busyMs).toBeGreaterThanOrEqual(900)
    expect(metrics.speedup).toBeGreaterThan(2)
    expect(metrics.peakParallelism).toBe(3)
    expect(metrics.efficiency).toBeGreaterThan(0.6)
    expect(metrics.perAgent.find((a) => a.id === 'cohort-plan.w1')).toMatchObject({
      status: 'completed',
      turns: 2,
    })
    expect(runtime.metrics().runs.completed).toBe(1)
  })
})

describe('stuck calls and queued calls hold nothing', () => {
  test('a model that ignores the abort gives its slot back when its agent times out; a call queued on a rate limit holds its place, no model call', async () => {
    const never: ChatModel = { name: 'never', complete: () => new Promise(() => {}) }
    const quick: ChatModel = {
      name: 'quick',
      complete: async () => ({ text: '{"action":"finish","result":"done"}' }),
    }
    const stuck = defineAgent({ name: 'stuck', instructions: '', model: never, limits: { timeoutMs: 100 } })
    const other = defineAgent({ name: 'other', instructions: '', model: quick })
    const runtime = createRuntime({ agents: [stuck, other], scheduler: { maxConcurrentModelCalls: 1 } })
    await expect(runtime.run('stuck', 'go')).rejects.toThrow(/timed out after 100 ms/)
    expect(runtime.metrics().modelCalls.inFlight).toBe(0)
    expect(await runtime.run('other', 'go')).toBe('done')

    const limited: ChatModel = { name: 'limited', complete: quick.complete }
    const slow = defineAgent({ name: 'slow', instructions: '', model: limited })
    const spaced = createRuntime({
      agents: [slow, other],
      scheduler: { maxConcurrentAgents: 1, rateLimits: { limited: { requestsPerMinute: 1 } } },
    })
    expect(await spaced.run('slow', 'first')).toBe('done')
    // The next call of `limited` waits about a minute for its bucket: it holds its place, taken
    // first so that an agent queued for a place holds no model call, and no model call.
    const waiting = spaced.start('slow', 'second')
    await waitUntil(() => spaced.metrics().modelCalls.queued === 1)
    expect(spaced.metrics()).toMatchObject({ modelCalls: { inFlight: 0 }, atWork: { working: 1, queued: 0 } })
    await waiting.cancel()
    expect(spaced.metrics()).toMatchObject({ modelCalls: { inFlight: 0, queued: 0 }, atWork: { working: 0 } })
  })

  test('an agent queued for a place holds no model call: calls in flight stay within maxConcurrentAgents, by priority', async () => {
    const model = scriptedModel({ worker: [{ action: 'finish', result: 'ok' }] }, { latencyMs: 5 })
    const runtime = createRuntime({
      agents: [worker],
      model,
      limits: { maxChildrenPerLaunch: 40 },
      scheduler: { maxConcurrentAgents: 2 },
    })
    const run = runtime.runPlan({
      agents: Array.from({ length: 40 }, (_, i) => ({
        id: `w${i}`,
        agent: 'worker',
        task: 't',
        priority: i % 4,
      })),
    })
    let inFlight = 0
    const priorities: number[] = []
    run.on('model.started', (event) => {
      inFlight = Math.max(inFlight, runtime.metrics().modelCalls.inFlight)
      const worker = /\.w(\d+)$/.exec(event.agentId)
      if (worker) priorities.push(Number(worker[1]) % 4)
    })
    await run.result
    // Before, each of the 40 took its model call, then waited for a place holding it.
    expect(inFlight).toBeLessThanOrEqual(2)
    expect(runtime.metrics().modelCalls.maxInFlight).toBeLessThanOrEqual(2)
    // The first workers find a place; the others queue for one and are served highest first.
    const queued = priorities.slice(2)
    expect(queued).toHaveLength(38)
    expect(queued).toEqual([...queued].sort((a, b) => b - a))
  })
})

/** A boss that launches four workers of `timeoutMs` and waits; each worker's one model call takes `latencyMs`. */
function fourWorkers({ timeoutMs, latencyMs }: { timeoutMs: number; latencyMs: number }) {
  const worker = defineAgent({ name: 'worker', instructions: '' })
  const boss = defineAgent({ name: 'boss', instructions: '', subagents: [worker] })
  const launch: ScriptedReply = {
    action: 'launch_subagents',
    agents: Array.from({ length: 4 }, (_, i) => ({
      agent: 'worker',
      task: 'work',
      id: `w${i}`,
      timeout_ms: timeoutMs,
    })),
  }
  const model = scriptedModel(
    {
      boss: [launch, { action: 'wait_for_subagents' }, { action: 'finish', result: 'done' }],
      worker: [{ action: 'finish', result: 'ok' }],
    },
    { latencyMs: (request) => (request.agent.depth === 0 ? 0 : latencyMs) },
  )
  return { boss, worker, model }
}
