import { getEventListeners } from 'node:events'
import {
  type AgentDefinition,
  AgentFailedError,
  CancelledError,
  type ChatModel,
  type CohortEvent,
  createRuntime,
  defineAgent,
  defineTool,
  type LaunchSpec,
  LimitExceededError,
  type ModelRequest,
  memoryStore,
  type RunStore,
  StoreError,
  scriptedModel,
  sleep,
  TimeoutError,
} from '@cohort/core'
import { describe, expect, test } from 'vitest'
import { z } from 'zod'
import { fanOutLead, settledResults } from './support/scripts.js'

const worker = defineAgent({ name: 'worker', instructions: 'Sleep as told, then report.', tools: [sleep] })
const lead = defineAgent({ name: 'lead', instructions: 'Fan out, wait, report.', subagents: [worker] })

const sleepyWorker = [
  { action: 'call_tool', tool: 'sleep', args: { seconds: 0 } },
  { action: 'finish', result: 'done' },
]

describe('parallel sub-agents', () => {
  test('two children of 0.5 s and 1.0 s run at the same time: about 1.0 s, not 1.5 s', async () => {
    const model = scriptedModel({
      lead: [
        {
          action: 'launch_subagents',
          agents: [
            { agent: 'worker', task: '0.5', id: 'short' },
            { agent: 'worker', task: '1.0', id: 'long' },
          ],
        },
        { action: 'wait_for_subagents', ids: ['short', 'long'] },
        (request) => ({ action: 'finish', result: settledResults(request).map((r) => r.result) }),
      ],
      worker: [
        (request) => ({ action: 'call_tool', tool: 'sleep', args: { seconds: Number(request.agent.task) } }),
        (request) => ({ action: 'finish', result: `slept ${request.agent.task}` }),
      ],
    })
    const runtime = createRuntime({ agents: [lead, worker], model })
    const run = runtime.start('lead', 'fan out')
    const events: CohortEvent[] = []
    run.on('event', (event) => events.push(event))
    const started = performance.now()
    expect(await run.result).toEqual(['slept 0.5', 'slept 1.0'])
    const wall = performance.now() - started

    // Both sleeps started before either ended: they overlapped.
    const toolEvents = events.filter((e) => e.type === 'tool.started' || e.type === 'tool.completed')
    expect(toolEvents.map((e) => e.type)).toEqual([
      'tool.started',
      'tool.started',
      'tool.completed',
      'tool.completed',
    ])
    expect(wall).toBeGreaterThanOrEqual(990)
    expect(wall).toBeLessThan(3000)
    // The lead suspended while the children worked, and resumed once, with both results.
    const lifecycle = events.filter((e) => 'agentId' in e && e.agentId === 'lead').map((e) => e.type)
    expect(lifecycle).toContain('agent.suspended')
    expect(lifecycle.filter((t) => t === 'agent.resumed')).toHaveLength(1)
  })

  test('a depth-4 binary tree (15 agents) aggregates every leaf result', async () => {
    const node = defineAgent({ name: 'node', instructions: 'Split or answer.', subagents: ['node'] })
    const model = scriptedModel({
      node: (request) => {
        const { task, depth } = request.agent
        if (depth === 3) return { action: 'finish', result: [task] }
        if (request.turn === 0) {
          return {
            action: 'launch_subagents',
            agents: [
              { agent: 'node', task: `${task}L`, id: 'L' },
              { agent: 'node', task: `${task}R`, id: 'R' },
            ],
          }
        }
        if (request.turn === 1) return { action: 'wait_for_subagents' }
        return { action: 'finish', result: settledResults(request).flatMap((r) => r.result as string[]) }
      },
    })
    const store = memoryStore()
    const runtime = createRuntime({ agents: [node], model, store })
    const run = runtime.start('node', 'r')
    const result = await run.result
    expect(result).toEqual(['rLLL', 'rLLR', 'rLRL', 'rLRR', 'rRLL', 'rRLR', 'rRRL', 'rRRR'])
    const stored = await store.loadRun(run.id)
    expect(stored?.agents).toHaveLength(15)
    expect(stored?.agents.every((agent) => agent.status === 'completed')).toBe(true)
    expect(Math.max(...(stored?.agents.map((a) => a.depth) ?? []))).toBe(3)
    expect(stored?.run).toMatchObject({ status: 'completed', result })
  })

  test('native tool calls drive the same protocol, and every call is answered', async () => {
    const model = scriptedModel({
      lead: [
        {
          toolCalls: [
            {
              id: 'call_1',
              name: 'launch_subagents',
              arguments: JSON.stringify({ agents: [{ agent: 'worker', task: 't', id: 'w' }] }),
            },
            { id: 'call_2', name: 'wait_for_subagents', arguments: '{}' },
          ],
        },
        (request) => {
          const answered = request.messages.filter((m) => m.role === 'tool').map((m) => m.toolCallId)
          return {
            toolCalls: [{ id: 'call_3', name: 'finish', arguments: JSON.stringify({ result: answered }) }],
          }
        },
      ],
      worker: [
        { toolCalls: [{ id: 'c', name: 'sleep', arguments: '{"seconds":0}' }] },
        { toolCalls: [{ id: 'd', name: 'finish', arguments: '{"result":"ok"}' }] },
      ],
    })
    const runtime = createRuntime({ agents: [lead, worker], model })
    expect(await runtime.run('lead', 'go')).toEqual(['call_1', 'call_2'])
  })

  test('a wait that names a child twice reports it once', async () => {
    const model = scriptedModel({
      lead: [
        { action: 'launch_subagents', agents: [{ agent: 'worker', task: 't', id: 'w' }] },
        { action: 'wait_for_subagents', ids: ['w', 'w'] },
        (request) => ({ action: 'finish', result: request.messages.at(-1)!.content }),
      ],
      worker: sleepyWorker,
    })
    const told = (await createRuntime({ agents: [lead, worker], model }).run('lead', 'go')) as string
    expect(told).toMatch(/Sub-agents settled \(1\): /)
    expect(told.match(/"id":"w"/g)).toHaveLength(1)
  })

  test("a wait's results come in the order of its ids, or in launch order without ids, not in the order the children settled", async () => {
    const told: string[][] = []
    const idsOf = (request: ModelRequest) => settledResults(request).map((child) => child.id)
    // Each worker sleeps as long as its task says: c settles first, then b, then a and d.
    const model = scriptedModel({
      lead: [
        {
          action: 'launch_subagents',
          agents: ['0.3', '0.2', '0.1', '0.3'].map((task, index) => ({
            agent: 'worker',
            task,
            id: 'abcd'[index],
          })),
        },
        { action: 'wait_for_subagents', ids: ['c', 'a'] },
        (request) => {
          told.push(idsOf(request))
          return { action: 'wait_for_subagents' }
        },
        (request) => {
          told.push(idsOf(request))
          return { action: 'finish', result: 'done' }
        },
      ],
      worker: [
        (request) => ({ action: 'call_tool', tool: 'sleep', args: { seconds: Number(request.agent.task) } }),
        { action: 'finish', result: 'done' },
      ],
    })
    await createRuntime({ agents: [lead, worker], model }).run('lead', 'go')
    expect(told).toEqual([
      ['c', 'a'],
      ['b', 'd'],
    ])
  })

  test('a parent that finishes while its children run ends them, and theirs, with CANCELLED: their results are lost', async () => {
    const team = defineAgent({
      name: 'team',
      instructions: 'Launch, then work.',
      tools: [sleep],
      subagents: [worker],
    })
    const boss = defineAgent({ name: 'boss', instructions: 'Launch, then finish.', subagents: [team] })
    const model = scriptedModel({
      boss: [
        { action: 'launch_subagents', agents: [{ agent: 'team', task: 't', id: 't' }] },
        // Long enough for the team to launch its worker; then the boss finishes without waiting.
        async () => {
          await new Promise((resolve) => setTimeout(resolve, 300))
          return { action: 'finish', result: 'early' }
        },
      ],
      team: [
        { action: 'launch_subagents', agents: [{ agent: 'worker', task: 'w', id: 'w' }] },
        { action: 'call_tool', tool: 'sleep', args: { seconds: 5 } },
      ],
      worker: [{ action: 'call_tool', tool: 'sleep', args: { seconds: 5 } }],
    })
    const store = memoryStore()
    const run = createRuntime({ agents: [boss, team, worker], model, store }).start('boss', 'go')
    const warnings: string[] = []
    run.on('agent.warning', (event) => warnings.push(`${event.agentId}: ${event.message}`))
    expect(await run.result).toBe('early')
    // Nothing told of it: the lost work showed only as the children's own failures.
    expect(warnings).toEqual([
      'boss: finished while sub-agents still ran (t): they are cancelled, their results lost',
    ])
    const stored = await store.loadRun(run.id)
    const byId = new Map(stored!.agents.map((agent) => [agent.id, agent]))
    expect(byId.get('boss')?.status).toBe('completed')
    expect(byId.get('boss.t')?.snapshot.context.error).toMatchObject({
      code: 'CANCELLED',
      message: 'parent boss has ended',
    })
    // Its parent's end or the run's, whichever comes first.
    expect(byId.get('boss.t.w')?.snapshot.context.error?.code).toBe('CANCELLED')
    expect([byId.get('boss.t')?.status, byId.get('boss.t.w')?.status]).toEqual(['failed', 'failed'])
  })

  test('waits one after another in one reply each suspend and resume the agent, then it finishes', async () => {
    // The second wait moves the agent from suspended to suspended: a found hang (fuzzing).
    const model = scriptedModel({
      lead: [
        [
          { action: 'launch_subagents', agents: [{ agent: 'worker', task: 't', id: 'w' }] },
          { action: 'wait_for_subagents', ids: ['w'] },
          { action: 'wait_for_subagents', ids: [] },
          { action: 'finish', result: 'after two waits' },
        ],
      ],
      worker: sleepyWorker,
    })
    const runtime = createRuntime({ agents: [lead, worker], model })
    const run = runtime.start('lead', 'go')
    const events: CohortEvent[] = []
    run.on('event', (event) => events.push(event))
    expect(await run.result).toBe('after two waits')
    const ofLead = events.filter((e) => 'agentId' in e && e.agentId === 'lead').map((e) => e.type)
    expect(ofLead.filter((type) => type === 'agent.suspended')).toHaveLength(2)
    expect(ofLead.filter((type) => type === 'agent.resumed')).toHaveLength(2)
  })
})

describe('failures are results', () => {
  test('a model that replies garbage once recovers; one that always does fails, and its sibling is unaffected', async () => {
    const model = scriptedModel({
      lead: [
        {
          action: 'launch_subagents',
          agents: [
            { agent: 'worker', task: 'flaky', id: 'flaky' },
            { agent: 'worker', task: 'broken', id: 'broken' },
            { agent: 'worker', task: 'fine', id: 'fine' },
          ],
        },
        { action: 'wait_for_subagents' },
        (request) => ({ action: 'finish', result: settledResults(request) }),
      ],
      worker: (request) => {
        const { task } = request.agent
        if (task === 'broken') return 'I think the answer is 42, no JSON today.'
        if (task === 'flaky' && request.turn === 0) return '{"action": "finish", "result": '
        if (request.turn === 0) return sleepyWorker[0]!
        return { action: 'finish', result: `${task} ok` }
      },
    })
    const runtime = createRuntime({ agents: [lead, worker], model, limits: { maxRepairs: 2 } })
    const run = runtime.start('lead', 'go')
    const repairs: string[] = []
    run.on('agent.repair', (event) => repairs.push(`${event.agentId}: ${event.error}`))
    const results = (await run.result) as {
      id: string
      status: string
      result?: unknown
      error?: { code: string; message: string }
    }[]
    expect(results.find((r) => r.id === 'flaky')).toMatchObject({ status: 'completed', result: 'flaky ok' })
    expect(results.find((r) => r.id === 'fine')).toMatchObject({ status: 'completed', result: 'fine ok' })
    const broken = results.find((r) => r.id === 'broken')
    expect(broken).toMatchObject({ status: 'failed', error: { code: 'PARSE_ERROR' } })
    expect(broken?.error?.message).toMatch(/no JSON action/)
    // flaky repaired once; broken was told twice (maxRepairs 2) before failing.
    expect(repairs.filter((r) => r.startsWith('lead.flaky'))).toHaveLength(1)
    expect(repairs.filter((r) => r.startsWith('lead.broken'))).toHaveLength(2)
  })

  test('the model sees the exact error for an unknown tool, bad arguments and an unknown wait id', async () => {
    const seen: string[] = []
    const model = scriptedModel({
      worker: [
        { action: 'call_tool', tool: 'teleport', args: {} },
        (request) => {
          seen.push(request.messages.at(-1)!.content)
          return { action: 'call_tool', tool: 'sleep', args: { seconds: 'three' } }
        },
        (request) => {
          seen.push(request.messages.at(-1)!.content)
          return { action: 'wait_for_subagents', ids: ['ghost'] }
        },
        (request) => {
          seen.push(request.messages.at(-1)!.content)
          return { action: 'finish', result: 'recovered' }
        },
      ],
    })
    const runtime = createRuntime({ agents: [worker], model })
    expect(await runtime.run('worker', 'go')).toBe('recovered')
    expect(seen[0]).toMatch(/unknown tool "teleport"; available tools: sleep/)
    expect(seen[1]).toMatch(/invalid arguments for tool "sleep": args.seconds: .*number/)
    expect(seen[2]).toMatch(/unknown id "ghost"; launched ids: none/)
  })

  test('a tool that throws is reported to the model, and the agent goes on', async () => {
    const { defineTool } = await import('@cohort/core')
    const { z } = await import('zod')
    const explode = defineTool({
      name: 'explode',
      description: 'always fails',
      parameters: z.object({}),
      execute: () => {
        throw new Error('kaboom')
      },
    })
    const agent = defineAgent({ name: 'solo', instructions: '', tools: [explode] })
    const model = scriptedModel({
      solo: [
        { action: 'call_tool', tool: 'explode', args: {} },
        (request) => ({ action: 'finish', result: request.messages.at(-1)!.content }),
      ],
    })
    expect(await createRuntime({ agents: [agent], model }).run('solo', 'go')).toBe(
      '[call_tool explode] error: kaboom',
    )
  })
})

describe('model failures', () => {
  test('a model that throws at once, or rejects, fails its agent with that error and frees its slot', async () => {
    for (const broken of [
      () => {
        throw new Error('no connection')
      },
      async () => {
        throw new Error('no connection')
      },
    ]) {
      const solo = defineAgent({ name: 'solo', instructions: 'Answer.' })
      const model: ChatModel = {
        name: 'flaky',
        complete: (request) =>
          request.runId.startsWith('broken')
            ? broken()
            : Promise.resolve({ text: '{"action":"finish","result":"ok"}' }),
      }
      // One model call at a time: a slot the failed call kept would hold up the next run.
      const runtime = createRuntime({ agents: [solo], model, scheduler: { maxConcurrentModelCalls: 1 } })
      const run = runtime.start('solo', 'go', { runId: `broken-${Math.random().toString(36).slice(2, 8)}` })
      const failures: string[] = []
      run.on('model.failed', (event) => failures.push(event.error.message))
      await expect(run.result).rejects.toThrow('no connection')
      expect(failures).toEqual(['no connection'])
      expect(await runtime.run('solo', 'go')).toBe('ok')
    }
  })
})

describe('oversized replies', () => {
  test("tool calls whose arguments together pass a reply's 200,000 characters are refused, and the history keeps only their beginnings", async () => {
    const solo = defineAgent({ name: 'solo', instructions: 'Answer.', tools: [sleep] })
    const huge = JSON.stringify({ seconds: 0, note: 'x'.repeat(150_000) })
    const model = scriptedModel({
      solo: [
        {
          text: '',
          toolCalls: [
            { id: 'call_0', name: 'sleep', arguments: huge },
            { id: 'call_1', name: 'sleep', arguments: huge },
          ],
        },
        { action: 'finish', result: 'shorter now' },
      ],
    })
    const store = memoryStore()
    const runtime = createRuntime({ agents: [solo], model, store })
    const run = runtime.start('solo', 'go')
    const repairs: string[] = []
    run.on('agent.repair', (event) => repairs.push(event.error))
    expect(await run.result).toBe('shorter now')
    expect(repairs).toEqual([
      expect.stringMatching(
        /the reply's tool calls hold 300\d{3} characters of arguments; at most 200000 are accepted/,
      ),
    ])
    const [agent] = (await store.loadRun(run.id))!.agents
    const calls = agent!.snapshot.context.messages.flatMap((message) =>
      message.role === 'assistant' ? (message.toolCalls ?? []) : [],
    )
    expect(calls.map((call) => call.id)).toEqual(['call_0', 'call_1'])
    const kept = calls.reduce((sum, call) => sum + String(call.arguments).length, 0)
    expect(kept).toBeLessThan(201_000)
  })
})

describe('tool outcomes', () => {
  test('a value, a promise, a throw and a rejection each reach the model as the tool meant them', async () => {
    const { defineTool } = await import('@cohort/core')
    const { z } = await import('zod')
    const tool = (name: string, execute: () => unknown) =>
      defineTool({ name, description: name, parameters: z.object({}), execute })
    const tools = [
      tool('value', () => ({ n: 1 })),
      tool('promise', async () => 'later'),
      tool('throws', () => {
        throw new Error('at once')
      }),
      tool('rejects', async () => {
        throw new Error('eventually')
      }),
      tool('nothing', () => undefined),
    ]
    const agent = defineAgent({ name: 'solo', instructions: '', tools })
    const model = scriptedModel({
      solo: (request) =>
        request.turn < tools.length
          ? { action: 'call_tool', tool: tools[request.turn]!.name, args: {} }
          : {
              action: 'finish',
              result: request.messages
                .filter((m) => m.content.startsWith('[call_tool'))
                .map((m) => m.content),
            },
    })
    expect(await createRuntime({ agents: [agent], model }).run('solo', 'go')).toEqual([
      '[call_tool value] {"n":1}',
      '[call_tool promise] later',
      '[call_tool throws] error: at once',
      '[call_tool rejects] error: eventually',
      '[call_tool nothing] null',
    ])
  })
})

describe('abort signals', () => {
  const stepper = defineAgent({ name: 'stepper', instructions: 'Step.', tools: [sleep] })
  const stepReply = (request: ModelRequest) =>
    request.turn < 20
      ? JSON.stringify({ action: 'call_tool', tool: 'sleep', args: { seconds: 0 } })
      : JSON.stringify({ action: 'finish', result: request.turn })

  test('a model that never removes its abort listener does not make listeners pile up', async () => {
    // As the openai SDK does: one listener per request, left on the signal.
    const seen: number[] = []
    const model: ChatModel = {
      name: 'leaky',
      async complete(request) {
        seen.push(getEventListeners(request.signal, 'abort').length)
        request.signal.addEventListener('abort', () => {}, { once: true })
        return { text: stepReply(request) }
      },
    }
    const runtime = createRuntime({ agents: [stepper], model })
    expect(await runtime.run('stepper', 'go')).toBe(20)
    expect(seen).toHaveLength(21)
    // Each call's signal holds only the runtime's own listener (it gives the call's slot back on abort).
    expect(Math.max(...seen)).toBe(1)
  })

  test('cancel aborts a model call whose signal earlier steps already used', async () => {
    let aborted: unknown
    let calling!: () => void
    const called = new Promise<void>((resolve) => {
      calling = resolve
    })
    const model: ChatModel = {
      name: 'tidy',
      async complete(request) {
        if (request.turn < 5) return { text: stepReply(request) }
        // Earlier calls left no listener behind, so this call may get the same signal back.
        calling()
        return new Promise((_, reject) => {
          request.signal.addEventListener('abort', () => {
            aborted = request.signal.reason
            reject(request.signal.reason)
          })
        })
      },
    }
    const run = createRuntime({ agents: [stepper], model }).start('stepper', 'go')
    await called
    await run.cancel('stop now')
    await expect(run.result).rejects.toBeInstanceOf(CancelledError)
    expect(aborted).toBeInstanceOf(Error)
  })
})

describe('limits and cancel', () => {
  const launcher = (count: number) =>
    scriptedModel({
      lead: (request) =>
        request.turn === 0
          ? {
              action: 'launch_subagents',
              agents: Array.from({ length: count }, (_, i) => ({ agent: 'worker', task: `t${i}` })),
            }
          : { action: 'finish', result: request.messages.at(-1)!.content },
      worker: sleepyWorker,
    })

  test('maxChildrenPerLaunch refuses the launch with the reason, to the model', async () => {
    const runtime = createRuntime({
      agents: [lead, worker],
      model: launcher(4),
      limits: { maxChildrenPerLaunch: 3 },
    })
    expect(await runtime.run('lead', 'go')).toMatch(
      /launch refused: 4 sub-agents requested, at most 3 per launch/,
    )
  })

  test('maxAgents refuses the launch with the reason', async () => {
    const runtime = createRuntime({ agents: [lead, worker], model: launcher(3), limits: { maxAgents: 3 } })
    expect(await runtime.run('lead', 'go')).toMatch(
      /the run has 1 agents and 3 more would pass the maximum of 3/,
    )
  })

  test('maxDepth refuses the launch with the reason', async () => {
    const runtime = createRuntime({ agents: [lead, worker], model: launcher(1), limits: { maxDepth: 0 } })
    expect(await runtime.run('lead', 'go')).toMatch(/sub-agents would be at depth 1, the maximum depth is 0/)
  })

  test('a model that keeps launching past a limit fails after its repairs, with the reason', async () => {
    const model = scriptedModel({
      lead: () => ({
        action: 'launch_subagents',
        agents: [
          { agent: 'worker', task: 'a' },
          { agent: 'worker', task: 'b' },
        ],
      }),
      worker: sleepyWorker,
    })
    const runtime = createRuntime({
      agents: [lead, worker],
      model,
      limits: { maxChildrenPerLaunch: 1, maxRepairs: 2 },
    })
    await expect(runtime.run('lead', 'go')).rejects.toThrow(
      /launch refused: 2 sub-agents requested, at most 1/,
    )
  })

  test('maxSteps fails the agent with the reason', async () => {
    const model = scriptedModel({
      worker: () => ({ action: 'call_tool', tool: 'sleep', args: { seconds: 0 } }),
    })
    const runtime = createRuntime({ agents: [worker], model, limits: { maxSteps: 4 } })
    await expect(runtime.run('worker', 'loop')).rejects.toThrow(
      /^agent worker failed: made 4 model calls, the limit is 4 \(maxSteps\)$/,
    )
  })

  test("a failed run's error has its kind as a typed cause, also when read back from the store", async () => {
    const store = memoryStore()
    const stepper = defineAgent({
      name: 'stepper',
      instructions: '',
      tools: [sleep],
      limits: { maxSteps: 1 },
    })
    const slow = defineAgent({ name: 'slow', instructions: '', limits: { timeoutMs: 30 } })
    const model = scriptedModel(
      {
        stepper: () => ({ action: 'call_tool', tool: 'sleep', args: { seconds: 0 } }),
        slow: [{ action: 'finish', result: 1 }],
      },
      { latencyMs: (request) => (request.agent.name === 'slow' ? 5_000 : 0) },
    )
    const runtime = createRuntime({ agents: [stepper, slow], model, store })
    const limited = await runtime.run('stepper', 'go', { runId: 'limited' }).catch((e: unknown) => e)
    expect(limited).toBeInstanceOf(AgentFailedError)
    expect((limited as Error).message).toBe(
      'agent stepper failed: made 1 model call, the limit is 1 (maxSteps)',
    )
    const limit = (limited as AgentFailedError).cause
    expect(limit).toBeInstanceOf(LimitExceededError)
    expect(limit).toMatchObject({ code: 'LIMIT_EXCEEDED', limit: 'maxSteps' })

    const timedOut = await runtime.run('slow', 'go').catch((e: unknown) => e)
    expect((timedOut as Error).message).toBe('agent slow failed: timed out after 30 ms')
    expect((timedOut as AgentFailedError).cause).toBeInstanceOf(TimeoutError)
    expect((timedOut as AgentFailedError).cause).toMatchObject({ code: 'TIMEOUT' })

    // Another process reads the settled run from the store.
    const later = createRuntime({ agents: [stepper, slow], model, store })
    const again = await (await later.resume('limited')).result.catch((e: unknown) => e)
    expect((again as AgentFailedError).cause).toBeInstanceOf(LimitExceededError)
    expect((again as AgentFailedError).cause).toMatchObject({ limit: 'maxSteps' })
  })

  test('cancel ends every agent, stored and live, and the result rejects with CancelledError', async () => {
    const model = scriptedModel({
      lead: fanOutLead(['a', 'b'], 'never'),
      worker: [
        { action: 'call_tool', tool: 'sleep', args: { seconds: 30 } },
        { action: 'finish', result: 'never' },
      ],
    })
    const store = memoryStore()
    const runtime = createRuntime({ agents: [lead, worker], model, store })
    const run = runtime.start('lead', 'go')
    await new Promise<void>((resolve) => run.on('tool.started', (e) => e.agentId.endsWith('-2') && resolve()))
    const started = performance.now()
    await run.cancel('enough')
    expect(performance.now() - started).toBeLessThan(2000)
    await expect(run.result).rejects.toBeInstanceOf(CancelledError)
    const live = await run.snapshot()
    expect(live.agents.map((a) => a.status).sort()).toEqual(['failed', 'failed', 'failed'])
    const stored = await store.loadRun(run.id)
    expect(stored?.run.status).toBe('cancelled')
    expect(
      stored?.agents.every((a) => a.status === 'failed' && a.snapshot.context.error?.code === 'CANCELLED'),
    ).toBe(true)
  })
})

test('a run cancelled as soon as it is started makes no model call and is stored as cancelled', async () => {
  let calls = 0
  const model = scriptedModel({
    worker: () => {
      calls++
      return { action: 'finish', result: 'done' }
    },
  })
  const store = memoryStore()
  const run = createRuntime({ agents: [worker], model, store }).start('worker', 'go')
  await run.cancel('not now')
  await expect(run.result).rejects.toBeInstanceOf(CancelledError)
  expect(calls).toBe(0)
  const stored = await store.loadRun(run.id)
  expect(stored?.run.status).toBe('cancelled')
  expect(stored?.agents.map((agent) => agent.snapshot.context.error?.code)).toEqual(['CANCELLED'])
})

test('a run cancelled by a listener while a launch starts its children starts no more of them', async () => {
  const model = scriptedModel({
    lead: fanOutLead(['a', 'b', 'c', 'd'], 'never'),
    worker: [{ action: 'finish', result: 'done' }],
  })
  const run = createRuntime({ agents: [lead, worker], model }).start('lead', 'go')
  const calls: string[] = []
  run.on('model.started', (event) => {
    if (event.agentId === 'lead') return
    calls.push(event.agentId)
    // Model calls start as the launch makes each child: the first one's cancels the run at once.
    void run.cancel('enough')
  })
  await expect(run.result).rejects.toBeInstanceOf(CancelledError)
  expect(calls).toHaveLength(1)
  const live = await run.snapshot()
  expect(live.agents).toHaveLength(5)
  expect(live.agents.every((agent) => agent.status === 'failed')).toBe(true)
})

test('a snapshot taken as soon as the run is started holds its record and its root', async () => {
  const model = scriptedModel({ worker: [{ action: 'finish', result: 'done' }] })
  const run = createRuntime({ agents: [worker], model }).start('worker', 'go')
  const snapshot = await run.snapshot()
  expect(snapshot.run).toMatchObject({ id: run.id, status: 'running', agent: 'worker' })
  expect(snapshot.agents.map((agent) => agent.id)).toEqual(['worker'])
  expect(await run.result).toBe('done')
})

test('children given no id are numbered around the ids the model gave, in this launch and earlier ones', async () => {
  const model = scriptedModel({
    lead: [
      {
        action: 'launch_subagents',
        agents: [
          { agent: 'worker', task: 'explicit', id: 'worker-2' },
          { agent: 'worker', task: 'auto' },
        ],
      },
      { action: 'launch_subagents', agents: [{ agent: 'worker', task: 'auto, later' }] },
      { action: 'wait_for_subagents' },
      (request) => ({ action: 'finish', result: settledResults(request).map((child) => child.result) }),
    ],
    worker: [(request) => ({ action: 'finish', result: request.agent.task })],
  })
  const run = createRuntime({ agents: [lead, worker], model }).start('lead', 'go')
  const launched: string[] = []
  run.on('agent.launched', (event) => launched.push(...event.children.map((child) => child.id)))
  expect(await run.result).toEqual(['explicit', 'auto', 'auto, later'])
  expect(launched).toEqual(['lead.worker-2', 'lead.worker-3', 'lead.worker-4'])
})

test('createRuntime refuses agents it could not run, naming the agent and what is expected', () => {
  const model = scriptedModel({})
  expect(() => createRuntime({ agents: [], model })).toThrow(/createRuntime needs at least one agent/)
  const plain = { name: 'x' } as unknown as AgentDefinition
  expect(() => createRuntime({ agents: [plain], model })).toThrow(
    /agents\[0\] \("x"\) is not an agent definition: make it with defineAgent/,
  )
  expect(() => createRuntime({ agents: [defineAgent({ name: 'cohort-plan' })], model })).toThrow(
    /agent name "cohort-plan" is taken by runPlan's own agent/,
  )
  // Checked before any run: at its first launch it would fail the parent instead.
  // defineAgent refuses these limits; a definition made without it is refused here.
  const strict = { ...defineAgent({ name: 'strict' }), limits: { maxSteps: 0 } }
  expect(() => createRuntime({ agents: [lead, worker, strict], model })).toThrow(
    /invalid limits of agent "strict": maxSteps: .*expected maxSteps, maxRepairs/,
  )
})

describe('launching many sub-agents', () => {
  const launchOf = (count: number, agent = 'worker') => ({
    action: 'launch_subagents' as const,
    agents: Array.from({ length: count }, (_, i): LaunchSpec => ({ agent, task: `t${i}`, id: `c${i}` })),
  })

  test('the first children call their model while the last ones have not started yet', async () => {
    const model = scriptedModel({
      lead: [launchOf(200), { action: 'wait_for_subagents' }, { action: 'finish', result: 'done' }],
      worker: [{ action: 'finish', result: 'ok' }],
    })
    const runtime = createRuntime({
      agents: [lead, worker],
      model,
      limits: { maxChildrenPerLaunch: 200, maxAgents: 201 },
    })
    const run = runtime.start('lead', 'go')
    const order: string[] = []
    run.on('agent.started', (event) => order.push(`agent.started ${event.agentId}`))
    run.on('model.started', (event) => order.push(`model.started ${event.agentId}`))
    expect(await run.result).toBe('done')
    // Started all at once, every child started before the first one's call, which waited on
    // one write of all 200.
    expect(order.indexOf('model.started lead.c0')).toBeLessThan(order.indexOf('agent.started lead.c199'))
  })

  test('a child may depend on a sibling started in a later chunk of its launch', async () => {
    const launch = launchOf(120)
    launch.agents[0] = { ...launch.agents[0]!, depends_on: ['c119'] }
    const firstCalls: string[] = []
    const model = scriptedModel({
      lead: [
        launch,
        { action: 'wait_for_subagents', ids: ['c0'] },
        (request) => ({ action: 'finish', result: settledResults(request).map((child) => child.result) }),
      ],
      worker: (request) => {
        firstCalls.push(request.agent.id)
        const note = request.messages.find((message) => message.content.startsWith('Results of the agents'))
        return {
          action: 'finish',
          result: note ? `c0 saw ${note.content.match(/"result":"([^"]+)"/)?.[1]}` : request.agent.task,
        }
      },
    })
    const runtime = createRuntime({
      agents: [lead, worker],
      model,
      limits: { maxChildrenPerLaunch: 120, maxAgents: 121 },
    })
    expect(await runtime.run('lead', 'go')).toEqual(['c0 saw t119'])
    // c0 waited for c119, the last child of the last chunk, to finish.
    expect(firstCalls.indexOf('lead.c0')).toBeGreaterThan(firstCalls.indexOf('lead.c119'))
  })

  test('two launches under way at once stay within maxAgents together', async () => {
    const mid = defineAgent({ name: 'mid', instructions: 'Fan out.', subagents: [worker] })
    const top = defineAgent({ name: 'top', instructions: 'Delegate.', subagents: [mid] })
    const model = scriptedModel({
      top: [
        {
          action: 'launch_subagents',
          agents: ['a', 'b'].map((id) => ({ agent: 'mid', task: id, id })),
        },
        { action: 'wait_for_subagents' },
        (request) => ({ action: 'finish', result: settledResults(request).map((child) => child.result) }),
      ],
      mid: (request) => {
        if (request.turn === 0) return launchOf(60)
        if (request.messages.at(-1)?.content.includes('launch refused'))
          return { action: 'finish', result: 'refused' }
        return request.turn === 1
          ? { action: 'wait_for_subagents' }
          : { action: 'finish', result: 'launched' }
      },
      worker: [{ action: 'finish', result: 'ok' }],
    })
    // Room for 3 + 115 agents: one launch of 60 fits, two do not. The second is planned while the
    // first has made its first 50 children and not yet the other 10.
    const runtime = createRuntime({
      agents: [top, mid, worker],
      model,
      limits: { maxChildrenPerLaunch: 60, maxAgents: 118 },
    })
    const run = runtime.start('top', 'go')
    expect(((await run.result) as string[]).sort()).toEqual(['launched', 'refused'])
    expect((await run.snapshot()).agents).toHaveLength(63)
  })

  test('a parent that ends while its launch is under way ends the children it made', async () => {
    const mid = defineAgent({ name: 'mid', instructions: 'Fan out.', subagents: [worker] })
    const top = defineAgent({ name: 'top', instructions: 'Delegate.', subagents: [mid] })
    const model = scriptedModel(
      {
        top: [
          {
            action: 'launch_subagents',
            agents: [{ agent: 'mid', task: 'fan out', id: 'mid', timeout_ms: 200 }],
          },
          { action: 'wait_for_subagents' },
          (request) => ({ action: 'finish', result: settledResults(request).map((child) => child.status) }),
        ],
        mid: [launchOf(300), { action: 'wait_for_subagents' }, { action: 'finish', result: 'all done' }],
        worker: [{ action: 'finish', result: 'ok' }],
      },
      // Workers' calls are still in flight when mid ends, and top's last call outlasts the launch.
      {
        latencyMs: ({ agent, turn }) => (agent.depth === 2 ? 300 : agent.depth === 0 && turn === 2 ? 500 : 0),
      },
    )
    const runtime = createRuntime({
      agents: [top, mid, worker],
      model,
      limits: { maxChildrenPerLaunch: 300, maxAgents: 302 },
    })
    const run = runtime.start('top', 'go')
    let workersStarted = 0
    let midStarted = 0
    run.on('agent.started', (event) => {
      if (event.depth === 2) workersStarted++
      if (event.agentId === 'top.mid') midStarted = Date.now()
    })
    run.on('agent.launched', (event) => {
      // The launch takes longer than mid may live: its deadline passes between the first starts.
      if (event.agentId !== 'top.mid') return
      const until = midStarted + 210
      while (Date.now() < until) {}
    })
    expect(await run.result).toEqual(['failed'])
    const stored = await run.snapshot()
    const workers = stored.agents.filter((agent) => agent.depth === 2)
    expect(workers.length).toBeGreaterThan(0)
    // None ran on, unknown to its parent: each ended with it, and the launch made and started no
    // more. (Workers' calls outlast the time mid's end takes to be stored, which is when, with
    // 'sync' durability, its children are ended: 30 ms did not on a loaded machine.)
    for (const record of workers) {
      expect(record.status).toBe('failed')
      expect(record.snapshot.context.error?.message).toBe('parent top.mid has ended')
    }
    expect(workersStarted).toBeGreaterThan(0)
    expect(workersStarted).toBeLessThan(300)
  })
})

describe('run ids', () => {
  test('a run id already in the store is refused, and the stored run is left as it was', async () => {
    const solo = defineAgent({ name: 'solo', instructions: 'Answer.' })
    const store = memoryStore()
    const model = scriptedModel({ solo: [(request) => ({ action: 'finish', result: request.agent.task })] })
    const runtime = createRuntime({ agents: [solo], model, store })
    expect(await runtime.run('solo', 'first', { runId: 'taken' })).toBe('first')
    const before = await store.loadRun('taken')

    await expect(runtime.run('solo', 'second', { runId: 'taken' })).rejects.toThrow(
      'run taken already exists in the store: resume it, or start with another id',
    )
    expect(await store.loadRun('taken')).toEqual(before)
    await expect(runtime.prepareRun('solo', 'third', { runId: 'taken' })).rejects.toThrow(/already exists/)
    expect(await store.loadRun('taken')).toEqual(before)
  })

  test('a store that cannot tell whether a chosen run id is taken fails the start with its own error', async () => {
    const solo = defineAgent({ name: 'solo', instructions: 'Answer.' })
    const down: RunStore = {
      ...memoryStore(),
      loadRun: () => Promise.reject(new StoreError('store down: connect ECONNREFUSED')),
      loadRunRecord: () => Promise.reject(new StoreError('store down: connect ECONNREFUSED')),
    }
    const runtime = createRuntime({ agents: [solo], model: scriptedModel({}), store: down })
    await expect(runtime.run('solo', 'x', { runId: 'fresh' })).rejects.toThrow(
      'store down: connect ECONNREFUSED',
    )
  })
})

describe('runtime events', () => {
  test('a detach ends the stream with run.detached; a call it or a cancel stops adds no failure of its own after its agent ends', async () => {
    const solo = defineAgent({ name: 'solo', instructions: '' })
    // A model that answers only when aborted, as a real one cut off does.
    const model: ChatModel = {
      name: 'slow',
      complete: (request) =>
        new Promise((_, reject) =>
          request.signal?.addEventListener('abort', () => reject(request.signal?.reason)),
        ),
    }
    const runtime = createRuntime({ agents: [solo], model })
    const lines = (run: ReturnType<typeof runtime.start>) => {
      const seen: string[] = []
      run.on('event', (event) => seen.push(event.type))
      return seen
    }
    const detached = runtime.start('solo', 'go')
    const detachedEvents = lines(detached)
    await new Promise<void>((resolve) => detached.on('model.started', () => resolve()))
    await detached.detach()
    expect(detachedEvents.at(-1)).toBe('run.detached')
    expect(detachedEvents).not.toContain('model.failed')

    const cancelled = runtime.start('solo', 'go')
    const cancelledEvents = lines(cancelled)
    await new Promise<void>((resolve) => cancelled.on('model.started', () => resolve()))
    await cancelled.cancel('enough')
    await cancelled.result.catch(() => {})
    await new Promise((resolve) => setTimeout(resolve, 20))
    expect(cancelledEvents.slice(-2)).toEqual(['agent.failed', 'run.cancelled'])
    expect(cancelledEvents).not.toContain('model.failed')
  })

  test('a tool or a model that ignores its abort tells nothing once a cancel, a timeout or a detach stopped it', async () => {
    // Deaf to its signal: each call ends 150 ms after it began, whatever happened meanwhile.
    const deaf = defineTool({
      name: 'deaf',
      description: 'Takes 150 ms, abort or not.',
      parameters: z.object({}),
      execute: async () => {
        await new Promise((resolve) => setTimeout(resolve, 150))
        return 'ok'
      },
    })
    const leaf = defineAgent({ name: 'leaf', instructions: '', tools: [deaf] })
    const boss = defineAgent({ name: 'boss', instructions: '', subagents: [leaf] })
    const deafModel: ChatModel = {
      name: 'deaf',
      complete: async (request) => {
        await new Promise((resolve) => setTimeout(resolve, 150))
        request.onToken?.('done')
        return { text: JSON.stringify({ action: 'finish', result: 'late' }) }
      },
    }
    const model = scriptedModel({
      boss: (request) =>
        request.turn === 0
          ? [
              {
                action: 'launch_subagents',
                agents: [
                  { agent: 'leaf', task: 't', id: 'a' },
                  { agent: 'leaf', task: request.agent.task, id: 'b', timeout_ms: 40 },
                ],
              },
              { action: 'wait_for_subagents' },
            ]
          : { action: 'finish', result: 'ok' },
      leaf: [
        { action: 'call_tool', tool: 'deaf', args: {} },
        { action: 'finish', result: 'leaf' },
      ],
    })
    const runtime = createRuntime({ agents: [boss, leaf], model })
    const late = async (
      run: ReturnType<typeof runtime.start>,
      stop?: (run: ReturnType<typeof runtime.start>) => void,
    ) => {
      // Events of an agent after its end, or of the run after its end.
      const after: string[] = []
      const ended = new Set<string>()
      run.on('event', (event) => {
        const agentId = 'agentId' in event ? event.agentId : ''
        if (ended.has('') || ended.has(agentId)) after.push(`${event.type} ${agentId}`)
        if (/^run\.(completed|failed|cancelled|detached)$/.test(event.type)) ended.add('')
        if (event.type === 'agent.failed' || event.type === 'agent.completed') ended.add(agentId)
      })
      if (stop) setTimeout(() => stop(run), 40)
      await run.result.catch(() => {})
      await new Promise((resolve) => setTimeout(resolve, 200))
      return after
    }
    // The leaf b times out while its tool runs; a is cancelled, then detached, with theirs running.
    expect(await late(runtime.start('boss', 'timeout'))).toEqual([])
    expect(await late(runtime.start('boss', 'cancel'), (run) => run.cancel())).toEqual([])
    expect(await late(runtime.start('boss', 'detach'), (run) => void run.detach())).toEqual([])
    // A model call that goes on after a cancel tells neither its tokens nor its completion.
    const solo = defineAgent({ name: 'solo', instructions: '' })
    const modelRuntime = createRuntime({ agents: [solo], model: deafModel })
    const cancelled = modelRuntime.start('solo', 'go')
    const seen: string[] = []
    cancelled.on('event', (event) => seen.push(event.type))
    setTimeout(() => cancelled.cancel(), 40)
    await cancelled.result.catch(() => {})
    await new Promise((resolve) => setTimeout(resolve, 200))
    expect(seen.slice(-2)).toEqual(['agent.failed', 'run.cancelled'])
    expect(seen).not.toContain('model.completed')
    expect(seen).not.toContain('model.token')
  })

  test("runtime.on hears every run's events from now on, one type or all, until unsubscribed", async () => {
    const solo = defineAgent({ name: 'solo', instructions: '' })
    const runtime = createRuntime({
      agents: [solo],
      model: scriptedModel({ solo: [{ action: 'finish', result: 'ok' }] }),
    })
    const all: string[] = []
    const completed: string[] = []
    const offAll = runtime.on('event', (event) => all.push(`${event.runId} ${event.type}`))
    runtime.on('run.completed', (event) => completed.push(`${event.runId} ${String(event.result)}`))
    await runtime.run('solo', 'go', { runId: 'one' })
    await runtime.run('solo', 'go', { runId: 'two' })
    expect(completed).toEqual(['one ok', 'two ok'])
    expect(all.filter((line) => line.startsWith('one '))[0]).toBe('one run.started')
    expect(all.filter((line) => line.startsWith('two ')).at(-1)).toBe('two run.completed')
    offAll()
    const before = all.length
    await runtime.run('solo', 'go', { runId: 'three' })
    expect(all).toHaveLength(before)
    expect(completed).toEqual(['one ok', 'two ok', 'three ok'])
  })
})
