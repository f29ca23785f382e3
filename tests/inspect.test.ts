import {
  type AgentRecord,
  agentMachine,
  createRuntime,
  defineAgent,
  memoryStore,
  scriptedModel,
  settledChildren,
} from '@cohort/core'
import { expect, test } from 'vitest'
import { createActor, type InspectionEvent } from 'xstate'

/** The id an actor was created with: the agent's id, or `run <id>` for a run's actor. */
const idOf = (ref: object) => ('id' in ref ? String(ref.id) : '')

const worker = defineAgent({ name: 'worker', instructions: 'Work.' })
const lead = defineAgent({ name: 'lead', instructions: 'Lead.', subagents: [worker] })
const model = scriptedModel(
  {
    lead: [
      {
        action: 'launch_subagents',
        agents: [
          { agent: 'worker', task: 'ok', id: 'a' },
          { agent: 'worker', task: 'ok', id: 'b' },
          { agent: 'worker', task: 'boom', id: 'c' },
        ],
      },
      { action: 'wait_for_subagents' },
      (request) => ({ action: 'finish', result: settledChildren(request).map((child) => child.status) }),
    ],
    worker: [
      (request) =>
        request.agent.task === 'boom' ? { text: 'no action here' } : { action: 'finish', result: 'fine' },
      { text: 'still none' },
      { text: 'none again' },
      { text: 'never' },
    ],
  },
  { latencyMs: 1 },
)

test('inspect sees one XState actor per run and one per agent, each agent going through its states to the end', async () => {
  const events: InspectionEvent[] = []
  const runtime = createRuntime({ agents: [lead, worker], model, inspect: (event) => events.push(event) })
  const run = runtime.start('lead', 'go')
  expect(await run.result).toEqual(['completed', 'completed', 'failed'])

  const actors = events.filter((event) => event.type === '@xstate.actor').map((event) => idOf(event.actorRef))
  expect(actors.sort()).toEqual([`run ${run.id}`, 'lead', 'lead.a', 'lead.b', 'lead.c'].sort())
  expect(run.actor.getSnapshot().value).toBe('completed')

  const statesOf = (id: string) =>
    events
      .filter((event) => event.type === '@xstate.snapshot' && idOf(event.actorRef) === id)
      .map((event) =>
        JSON.stringify('snapshot' in event ? (event.snapshot as { value?: unknown }).value : null),
      )
  expect(statesOf('lead')).toEqual([
    '"idle"',
    '{"running":"thinking"}',
    '{"running":"acting"}',
    '{"running":"thinking"}',
    '{"suspended":"children"}',
    '{"running":"thinking"}',
    '"completed"',
  ])
  expect(statesOf('lead.a')).toEqual(['"idle"', '{"running":"thinking"}', '"completed"'])
  const failing = statesOf('lead.c')
  expect(failing[0]).toBe('"idle"')
  expect(failing.at(-1)).toBe('"failed"')
  // The agents' events reach the run's own actor as XState's `xstate.done.actor.<id>`.
  const toRun = events.filter(
    (event) =>
      event.type === '@xstate.event' &&
      event.actorRef === run.actor &&
      event.event.type.startsWith('xstate.done.actor.'),
  )
  expect(toRun.length).toBeGreaterThanOrEqual(4)
})

test("an agent is reachable by its id in the run actor's system while it lives", async () => {
  let release!: () => void
  const gate = new Promise<void>((resolve) => {
    release = resolve
  })
  const slow = scriptedModel({
    solo: [
      async () => {
        await gate
        return { action: 'finish', result: 1 }
      },
    ],
  })
  const solo = defineAgent({ name: 'solo', instructions: 'Wait.' })
  const runtime = createRuntime({ agents: [solo], model: slow })
  const run = runtime.start('solo', 'go')
  await new Promise((resolve) => setTimeout(resolve, 50))
  const agent = run.actor.system.get('solo')
  expect(agent?.getSnapshot().value).toEqual({ running: 'thinking' })
  release()
  expect(await run.result).toBe(1)
})

test("the run's actor names its root agent in its context, started and resumed: system.get(rootAgentId) is the root's actor", async () => {
  let release!: () => void
  const gate = new Promise<void>((resolve) => {
    release = resolve
  })
  const solo = defineAgent({ name: 'solo', instructions: 'Wait.' })
  const slow = scriptedModel({
    solo: [
      async () => {
        await gate
        return { action: 'finish', result: 1 }
      },
    ],
  })
  const store = memoryStore()
  const runtime = createRuntime({ agents: [solo], model: slow, store })
  const run = runtime.start('solo', 'go')
  await new Promise((resolve) => setTimeout(resolve, 50))
  // It was null all along: a user of the actor could not tell which agent the run was for.
  const { rootAgentId } = run.actor.getSnapshot().context
  expect(rootAgentId).toBe('solo')
  expect(run.actor.system.get(rootAgentId!)?.getSnapshot().value).toEqual({ running: 'thinking' })
  await run.detach()
  const again = await runtime.resume(run.id)
  expect(again.actor.getSnapshot().context.rootAgentId).toBe('solo')
  release()
  expect(await again.result).toBe(1)
  expect(again.actor.getSnapshot()).toMatchObject({
    value: 'completed',
    context: { rootAgentId: 'solo', result: 1 },
  })
})

test('an inspector that throws is reported once and called no more; the runs go on, at their start as mid-run', async () => {
  const solo = defineAgent({ name: 'solo', instructions: 'Finish.' })
  const model = scriptedModel({ solo: [{ action: 'finish', result: 1 }] }, { latencyMs: 5 })
  const warnings: string[] = []
  const onWarning = (warning: Error) => warnings.push(warning.message)
  const unhandled: unknown[] = []
  const onUnhandled = (reason: unknown) => unhandled.push(reason)
  process.on('warning', onWarning)
  process.on('unhandledRejection', onUnhandled)
  try {
    // Thrown at the run actor's first snapshot: runtime.start itself threw it.
    let atStart = 0
    const first = createRuntime({
      agents: [solo],
      model,
      inspect: () => {
        atStart++
        throw new Error('inspector bug at start')
      },
    })
    expect(await first.run('solo', 'go')).toBe(1)
    expect(await first.run('solo', 'again')).toBe(1)
    expect(atStart).toBe(1)
    // Thrown when the agent completes: it escaped as an unhandled rejection, which ends a Node process.
    let midRun = 0
    const second = createRuntime({
      agents: [solo],
      model,
      inspect: {
        next: (event) => {
          if (event.type !== '@xstate.snapshot' || idOf(event.actorRef) !== 'solo') return
          if ((event.snapshot as { value?: unknown }).value !== 'completed') return
          midRun++
          throw new Error('inspector bug mid-run')
        },
      },
    })
    expect(await second.run('solo', 'go')).toBe(1)
    expect(await second.run('solo', 'again')).toBe(1)
    expect(midRun).toBe(1)
    await new Promise((resolve) => setTimeout(resolve, 50))
    expect(unhandled).toEqual([])
    expect(
      warnings.filter((message) => message.includes('the inspect given to createRuntime threw')),
    ).toEqual([
      'cohort: the inspect given to createRuntime threw and is called no more: inspector bug at start',
      'cohort: the inspect given to createRuntime threw and is called no more: inspector bug mid-run',
    ])
  } finally {
    process.off('warning', onWarning)
    process.off('unhandledRejection', onUnhandled)
  }
})

test("an agent's stored record makes its actor again with XState's own API, in the same state; a final one stays final", async () => {
  let release!: () => void
  const gate = new Promise<void>((resolve) => {
    release = resolve
  })
  const store = memoryStore()
  const gated = scriptedModel({
    lead: [
      { action: 'launch_subagents', agents: [{ agent: 'worker', task: 'ok', id: 'a' }] },
      { action: 'wait_for_subagents' },
      { action: 'finish', result: 'done' },
    ],
    worker: [
      async () => {
        await gate
        return { action: 'finish', result: 'fine' }
      },
    ],
  })
  const run = createRuntime({ agents: [lead, worker], model: gated, store }).start('lead', 'go')
  await new Promise((resolve) => setTimeout(resolve, 100))
  // The recipe the README gives: typed as it is, no cast.
  const restore = (record: AgentRecord) =>
    createActor(agentMachine, {
      snapshot: agentMachine.resolveState(record.snapshot),
      input: record.snapshot.context,
    }).start()
  const mid = (await store.loadRun(run.id))!.agents
  expect(mid.map((record) => [record.id, restore(record).getSnapshot().value])).toEqual([
    ['lead', { suspended: 'children' }],
    ['lead.a', { running: 'thinking' }],
  ])
  release()
  await run.result
  for (const record of (await store.loadRun(run.id))!.agents) {
    const actor = restore(record)
    const final = actor.getSnapshot()
    expect(final.status).toBe('done')
    expect(final.context).toEqual(record.snapshot.context)
    actor.send({ type: 'START', deadline: null })
    actor.send({ type: 'FAIL', error: { name: 'Error', code: 'ERROR', message: 'late' } })
    expect(actor.getSnapshot()).toBe(final)
  }
})
