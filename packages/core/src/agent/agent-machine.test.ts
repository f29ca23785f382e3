import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { createActor } from 'xstate'
import { ModelError } from '../errors.js'
import type { AgentEventInput } from '../events/types.js'
import type { Action } from '../protocol/actions.js'
import type { ThinkOutcome } from './agent-loop.js'
import { type AgentMachineEvent, type AgentSnapshot, agentMachine, failEvent } from './agent-machine.js'
import { leadContext } from './lead-context.fixture.js'

function replied(actions: Action[]): AgentMachineEvent {
  const outcome: ThinkOutcome = {
    assistant: { role: 'assistant', content: JSON.stringify(actions) },
    parse: { ok: true, actions },
    feedback: [],
    durationMs: 1,
    inboxConsumed: 0,
  }
  return { type: 'REPLIED', outcome, maxRepairs: 2 }
}

const tool: Action = { action: 'call_tool', tool: 'add', args: { a: 1 }, key: '0.0' }

/** One event of each type, as the orchestrator sends them. */
const events: Record<AgentMachineEvent['type'], AgentMachineEvent> = {
  START: { type: 'START', deadline: null },
  REPLIED: replied([{ action: 'finish', result: 'done' }]),
  ACTED: {
    type: 'ACTED',
    outcome: { messages: [{ role: 'user', content: '[call_tool add] 2' }] },
    maxRepairs: 2,
  },
  CHILDREN_SETTLED: {
    type: 'CHILDREN_SETTLED',
    group: { results: [{ id: 'x', agent: 'w', status: 'completed', result: 1 }], conflicts: [] },
  },
  ANSWERED: { type: 'ANSWERED', answer: { approved: true } },
  REJECTED: { type: 'REJECTED', reason: 'no' },
  MESSAGE: { type: 'MESSAGE', from: 'user', text: 'hello' },
  DEADLINE: { type: 'DEADLINE', deadline: 12_345 },
  CUT_OFF: { type: 'CUT_OFF', busyMs: 600 },
  FAIL: { type: 'FAIL', error: { name: 'TimeoutError', code: 'TIMEOUT', message: 'too slow' } },
}

/** The events that take an agent from `idle` to each state. */
const paths: Record<string, AgentMachineEvent[]> = {
  idle: [],
  'running.thinking': [events.START],
  'running.acting': [events.START, replied([tool])],
  'suspended.children': [events.START, replied([{ action: 'wait_for_subagents', ids: ['x'] }])],
  'suspended.external': [
    events.START,
    replied([tool]),
    {
      type: 'ACTED',
      outcome: {
        messages: [],
        suspend: { kind: 'approval', callId: 'c1', key: '0.0', tool: 'add', args: { a: 1 }, prompt: 'ok?' },
      },
      maxRepairs: 2,
    },
  ],
  completed: [events.START, events.REPLIED],
  failed: [events.FAIL],
}

/** Where each event takes an agent in each state; a state missing from a row keeps the agent where it is. */
const moves: Record<string, Partial<Record<AgentMachineEvent['type'], string>>> = {
  idle: { START: 'running.thinking', FAIL: 'failed' },
  'running.thinking': { REPLIED: 'completed', FAIL: 'failed' },
  'running.acting': { ACTED: 'running.thinking', FAIL: 'failed' },
  'suspended.children': { CHILDREN_SETTLED: 'running.thinking', FAIL: 'failed' },
  'suspended.external': { ANSWERED: 'running.acting', REJECTED: 'running.thinking', FAIL: 'failed' },
  completed: {},
  failed: {},
}

function actorAt(state: string) {
  const context = leadContext()
  const actor = createActor(agentMachine, { input: context })
  const emitted: AgentEventInput[] = []
  actor.on('*', (event) => emitted.push(event))
  actor.start()
  for (const event of paths[state]!) actor.send(event)
  expect(stateOf(actor.getSnapshot())).toBe(state)
  emitted.length = 0
  return { actor, emitted }
}

function stateOf(snapshot: AgentSnapshot): string {
  const { value } = snapshot
  if (typeof value === 'string') return value
  const [top, sub] = Object.entries(value)[0]!
  return `${top}.${sub}`
}

describe('the agent machine, every state × every event', () => {
  // XState warns of each event sent to a final (stopped) actor: the table sends them on purpose.
  beforeAll(() => vi.spyOn(console, 'warn').mockImplementation(() => {}))
  afterAll(() => vi.restoreAllMocks())
  for (const state of Object.keys(paths)) {
    for (const type of Object.keys(events) as AgentMachineEvent['type'][]) {
      const target = moves[state]![type] ?? state
      it(`${state} + ${type} → ${target}`, () => {
        const { actor } = actorAt(state)
        const before = actor.getSnapshot()
        actor.send(events[type])
        const after = actor.getSnapshot()
        expect(stateOf(after)).toBe(target)
        if (type === 'MESSAGE' && after.status === 'active') {
          expect(after.context.inbox).toEqual([{ from: 'user', text: 'hello' }])
        } else if (type === 'DEADLINE' && after.status === 'active' && state !== 'idle') {
          // A started agent's deadline moves; an idle one gets its deadline when it starts.
          expect(after.context.deadline).toBe(12_345)
        } else if (type === 'CUT_OFF' && state.startsWith('running.')) {
          // A call a detach stopped counts as busy time; the agent stays where it was.
          expect(after.context.busyMs).toBe(before.context.busyMs + 600)
        } else if (target === state && type !== 'START') {
          // An event the state does not take changes nothing.
          expect(after.context).toBe(before.context)
        }
        if (target === 'completed' || target === 'failed') expect(after.status).toBe('done')
      })
    }
  }
})

describe('the agent machine', () => {
  it('reports its own events: started, suspended, resumed, repair, completed, failed', () => {
    const { actor, emitted } = actorAt('idle')
    actor.send(events.START)
    actor.send({
      type: 'REPLIED',
      outcome: {
        assistant: { role: 'assistant', content: 'hmm' },
        parse: { ok: false, error: 'no action' },
        feedback: [{ role: 'user', content: 'reply with an action' }],
        durationMs: 1,
        inboxConsumed: 0,
      },
      maxRepairs: 2,
    })
    actor.send(replied([{ action: 'wait_for_subagents', ids: ['x'] }]))
    actor.send(events.CHILDREN_SETTLED)
    actor.send(events.REPLIED)
    expect(emitted.map((event) => event.type)).toEqual([
      'agent.started',
      'agent.repair',
      'agent.suspended',
      'agent.resumed',
      'agent.completed',
    ])
    expect(emitted[4]).toMatchObject({ type: 'agent.completed', result: 'done' })
    const failing = actorAt('running.thinking')
    failing.actor.send(events.FAIL)
    expect(failing.emitted).toEqual([
      expect.objectContaining({ type: 'agent.failed', error: expect.objectContaining({ code: 'TIMEOUT' }) }),
    ])
  })

  it('fails after too many unusable replies in a row', () => {
    const { actor } = actorAt('running.thinking')
    const unusable: AgentMachineEvent = {
      type: 'REPLIED',
      outcome: {
        assistant: { role: 'assistant', content: '?' },
        parse: { ok: false, error: 'no action' },
        feedback: [],
        durationMs: 1,
        inboxConsumed: 0,
      },
      maxRepairs: 2,
    }
    actor.send(unusable)
    actor.send(unusable)
    expect(stateOf(actor.getSnapshot())).toBe('running.thinking')
    actor.send(unusable)
    expect(stateOf(actor.getSnapshot())).toBe('failed')
    expect(actor.getSnapshot().context.error?.code).toBe('PARSE_ERROR')
  })

  it('goes through every action of a reply in order, then thinks again', () => {
    const { actor } = actorAt('running.thinking')
    actor.send(replied([tool, { ...tool, key: '0.1' }]))
    expect(stateOf(actor.getSnapshot())).toBe('running.acting')
    actor.send(events.ACTED)
    expect(actor.getSnapshot().context.pending).toEqual([{ ...tool, key: '0.1' }])
    expect(stateOf(actor.getSnapshot())).toBe('running.acting')
    actor.send(events.ACTED)
    expect(stateOf(actor.getSnapshot())).toBe('running.thinking')
  })

  it('keeps the record of a failed process turn that fails it (failEvent of a ModelError)', () => {
    const { actor } = actorAt('running.thinking')
    const process = {
      turn: 0,
      command: 'sh',
      exitCode: 3,
      signal: null,
      durationMs: 120,
      stderrTail: 'boom\n',
      workspace: '/ws/lead',
    }
    actor.send(failEvent(new ModelError('command sh exited with code 3: boom', { process })))
    const { context } = actor.getSnapshot()
    expect(stateOf(actor.getSnapshot())).toBe('failed')
    expect(context.error).toMatchObject({
      code: 'MODEL_ERROR',
      message: 'command sh exited with code 3: boom',
    })
    expect(context.processes).toEqual([process])
    expect(context.busyMs).toBe(120)
    // Any other failure leaves the history as it was.
    const other = actorAt('running.thinking').actor
    other.send(failEvent(new ModelError('status 500')))
    expect(other.getSnapshot().context).toMatchObject({ processes: [], busyMs: 0 })
  })

  it('comes back from its persisted snapshot in the same state, with the same context', () => {
    for (const state of Object.keys(paths)) {
      const { actor } = actorAt(state)
      const persisted = JSON.parse(JSON.stringify(actor.getPersistedSnapshot()))
      const restored = createActor(agentMachine, { input: persisted.context, snapshot: persisted })
      restored.start()
      expect(stateOf(restored.getSnapshot())).toBe(state)
      expect(restored.getSnapshot().context).toEqual(JSON.parse(JSON.stringify(actor.getSnapshot().context)))
    }
  })
})
