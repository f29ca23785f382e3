import { describe, expect, test } from 'vitest'
import type { Action } from '../protocol/actions.js'
import {
  afterAct,
  afterAnswer,
  afterRejection,
  afterSettled,
  afterThought,
  failed,
  started,
  type ThinkOutcome,
  withMessage,
} from './agent-loop.js'
import type { AgentContext } from './context.js'
import { leadContext } from './lead-context.fixture.js'

const base: AgentContext = started(leadContext(), null)

const tool: Action = { action: 'call_tool', tool: 'add', args: { a: 1 }, key: '0.0', callId: 'c1' }

function thought(actions: Action[] | string, extra: Partial<ThinkOutcome> = {}): ThinkOutcome {
  return {
    assistant: { role: 'assistant', content: 'reply' },
    parse: typeof actions === 'string' ? { ok: false, error: actions } : { ok: true, actions },
    feedback: typeof actions === 'string' ? [{ role: 'user', content: 'repair it' }] : [],
    durationMs: 10,
    inboxConsumed: 0,
    ...extra,
  }
}

describe('the think/act loop as pure functions', () => {
  test('a reply becomes the pending actions, its usage and time booked; the old context is untouched', () => {
    const before = structuredClone(base)
    const step = afterThought(
      base,
      thought([tool], { usage: { promptTokens: 5, completionTokens: 2 }, cost: 0.1 }),
      3,
    )
    expect(step.repair).toBeUndefined()
    expect(step.context).toMatchObject({ pending: [tool], turn: 1, busyMs: 10 })
    expect(step.context.usage).toEqual({ promptTokens: 5, completionTokens: 2, cost: 0.1 })
    expect(step.context.messages.at(-1)).toEqual({ role: 'assistant', content: 'reply' })
    expect(base).toEqual(before)
  })

  test('finish ends the agent with its result; a wait moves its ids into waitingOn', () => {
    expect(afterThought(base, thought([{ action: 'finish', result: 42 }]), 3).context).toMatchObject({
      result: 42,
      pending: [],
      endedAt: expect.any(Number),
    })
    const waiting = afterThought(
      base,
      thought([{ action: 'wait_for_subagents', ids: ['a'], callId: 'w1' }]),
      3,
    )
    expect(waiting.context).toMatchObject({ waitingOn: ['a'], waitCallId: 'w1', pending: [] })
    // An id given twice is waited for once.
    const twice = afterThought(base, thought([{ action: 'wait_for_subagents', ids: ['a', 'b', 'a'] }]), 3)
    expect(twice.context.waitingOn).toEqual(['a', 'b'])
  })

  test('an unusable reply is a repair while repairs are left, then a ParseError', () => {
    const once = afterThought(base, thought('no action'), 1)
    expect(once.repair).toBe('no action')
    expect(once.context.repairs).toBe(1)
    expect(once.context.messages.at(-1)).toEqual({ role: 'user', content: 'repair it' })
    const twice = afterThought(once.context, thought('no action'), 1)
    expect(twice.context.error).toMatchObject({ code: 'PARSE_ERROR', message: 'no action' })
  })

  test('an action done takes the next pending one; a refused launch drops the rest of the reply', () => {
    const acting = { ...base, pending: [tool, { ...tool, key: '0.1', callId: 'c2' }] }
    const done = afterAct(
      acting,
      { messages: [{ role: 'tool', content: '2', toolCallId: 'c1' }], durationMs: 3 },
      3,
    )
    expect(done.context.pending).toEqual([{ ...tool, key: '0.1', callId: 'c2' }])
    expect(done.context.busyMs).toBe(base.busyMs + 3)
    const refused = afterAct(acting, { messages: [], refused: 'too many' }, 3)
    expect(refused.repair).toBe('too many')
    expect(refused.context.pending).toEqual([])
    expect(refused.context.messages.at(-1)).toMatchObject({
      role: 'tool',
      toolCallId: 'c2',
      content: expect.stringMatching(/skipped/),
    })
    // Out of repairs: a limit that refused it fails the agent with LIMIT_EXCEEDED, a launch the model got wrong with PARSE_ERROR.
    const byLimit = { messages: [], refused: 'too many', refusedBy: 'maxAgents' }
    expect(afterAct(acting, byLimit, 0).context.error?.code).toBe('LIMIT_EXCEEDED')
    expect(
      afterAct(acting, { messages: [], refused: 'dependency cycle a → b → a' }, 0).context.error,
    ).toMatchObject({
      code: 'PARSE_ERROR',
      message: 'dependency cycle a → b → a',
    })
  })

  test('a launch adds its children; a tool that needs a person suspends on it', () => {
    const launched = afterAct(
      { ...base, pending: [{ action: 'launch_subagents', agents: [{ agent: 'w', task: 't', id: 'a' }] }] },
      { messages: [], children: [{ localId: 'a', id: 'lead.a', agent: 'w', task: 't' }] },
      3,
    )
    expect(launched.context.children).toEqual([{ localId: 'a', id: 'lead.a', agent: 'w', task: 't' }])
    const awaiting = {
      kind: 'approval' as const,
      callId: 'c1',
      key: '0.0',
      tool: 'add',
      args: {},
      prompt: 'ok?',
    }
    const suspended = afterAct({ ...base, pending: [tool] }, { messages: [], suspend: awaiting }, 3)
    expect(suspended.context).toMatchObject({ awaiting, pending: [tool] })
  })

  test('settled children are one message, delivered, and the wait is over', () => {
    const waiting = { ...base, waitingOn: ['a'], waitCallId: 'w1' }
    const step = afterSettled(waiting, {
      results: [{ id: 'a', agent: 'w', status: 'completed', result: 'fine' }],
      conflicts: [],
    })
    expect(step.context).toMatchObject({ waitingOn: null, waitCallId: null, delivered: ['a'] })
    expect(step.context.messages.at(-1)?.content).toContain('fine')
  })

  test('an answer is kept under the action key and the call runs; a rejection tells the model and goes on', () => {
    const awaiting = {
      kind: 'approval' as const,
      callId: 'c1',
      key: '0.0',
      tool: 'add',
      args: {},
      prompt: 'ok?',
    }
    const suspended = { ...base, pending: [tool], awaiting }
    expect(afterAnswer(suspended, { approved: true })).toMatchObject({
      awaiting: null,
      answers: { '0.0': { approved: true } },
      pending: [tool],
    })
    const rejected = afterRejection(suspended, 'not today')
    expect(rejected).toMatchObject({ awaiting: null, pending: [] })
    expect(rejected.messages.at(-1)?.content).toContain('rejected: not today')
  })

  test('messages wait in the inbox; a failure ends the agent with its error', () => {
    expect(withMessage(base, 'user', 'hi')).toMatchObject({
      inbox: [{ from: 'user', text: 'hi' }],
      receivedMessages: [],
    })
    expect(withMessage(base, 'lead.a', 'hi', 'lead.a#0.0').receivedMessages).toEqual(['lead.a#0.0'])
    const error = { name: 'TimeoutError', code: 'TIMEOUT', message: 'slow' }
    expect(failed(base, { error })).toMatchObject({ error, endedAt: expect.any(Number) })
    // A call the failure cut off still counts: its time as busy, its retries.
    expect(failed(base, { error, busyMs: 40, retries: 2 })).toMatchObject({
      busyMs: base.busyMs + 40,
      retries: base.retries + 2,
    })
  })
})
