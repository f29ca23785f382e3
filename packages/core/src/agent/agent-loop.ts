import { LimitExceededError, ParseError, toErrorInfo } from '../errors.js'
import type { ProcessRecord } from '../models/command-model.js'
import type { ChatMessage, TokenUsage } from '../models/types.js'
import type { Action, ParseResult } from '../protocol/actions.js'
import { actionReply, childResultsMessage, inboxMessage } from '../protocol/feedback.js'
import type { Conflict } from '../workspaces/workspaces.js'
import {
  type AgentContext,
  type Awaiting,
  type ChildLink,
  type ChildResult,
  copyContext,
  emptyList,
  withoutFirst,
} from './context.js'

export interface ThinkOutcome {
  assistant: ChatMessage
  parse: ParseResult
  /** Messages that tell the model why its reply could not be used. */
  feedback: ChatMessage[]
  usage?: TokenUsage
  cost?: number
  durationMs: number
  retries?: number
  process?: ProcessRecord
  /** Inbox messages (the first n) that were delivered into this turn. */
  inboxConsumed: number
}

/** Children that settled, and files more than one of them changed in their workspaces. */
export interface SettledGroup {
  results: ChildResult[]
  conflicts: Conflict[]
}

export interface ActOutcome {
  messages: ChatMessage[]
  children?: ChildLink[]
  /** Set when the action was refused (a limit): the rest of the reply is dropped. */
  refused?: string
  /** Set when the action needs an approval or input from outside first. */
  suspend?: Awaiting
  durationMs?: number
}

/**
 * Where an agent goes after a step: on with its loop (`running`), or to another state of its
 * machine. `suspended` waits on children, `external` on the outside world.
 */
export type NextState = 'running' | 'suspended' | 'external' | 'completed' | 'failed'

/** The outcome of one step of the think/act loop: the agent's next context and state. */
export interface Step {
  context: AgentContext
  next: NextState
  /** Why the model is asked again (an unusable reply, a refused launch): an `agent.repair`. */
  repair?: string
}

// The think/act loop of `running`, as pure functions of the context and an effect's outcome.
// The orchestrator applies a step that stays in `running` to the agent's context itself and
// hands one that leaves it to the agent machine: a step costs no XState transition. Each step
// copies the context once (`copyContext`), changes the copy, and `route` finishes it.

/** A new agent's context once it starts. */
export function started(context: AgentContext, deadline: number | null, note?: string): AgentContext {
  const next = copyContext(context)
  next.startedAt = Date.now()
  next.deadline = deadline
  if (note !== undefined) next.messages = [...context.messages, { role: 'user', content: note }]
  return next
}

/** A model reply came back: its actions become `pending`, or the model is asked to repair it. */
export function afterThought(context: AgentContext, output: ThinkOutcome, maxRepairs: number): Step {
  const { parse } = output
  const consumed = output.inboxConsumed
  const messages = withInbox(context, output)
  const next = copyContext(context)
  next.turn = context.turn + 1
  if (consumed > 0) next.inbox = context.inbox.slice(consumed)
  next.busyMs = context.busyMs + output.durationMs
  if (output.retries) next.retries = context.retries + output.retries
  if (output.process) next.processes = [...context.processes, output.process]
  if (output.usage || output.cost) {
    next.usage = {
      promptTokens: context.usage.promptTokens + (output.usage?.promptTokens ?? 0),
      completionTokens: context.usage.completionTokens + (output.usage?.completionTokens ?? 0),
      cost: context.usage.cost + (output.cost ?? 0),
    }
  }
  next.messages = [...messages, output.assistant]
  if (parse.ok) {
    next.pending = parse.actions
    return route(next)
  }
  if (context.repairs < maxRepairs) {
    next.messages.push(...output.feedback)
    next.repairs = context.repairs + 1
    next.phase = 'thinking'
    return { context: next, next: 'running', repair: parse.error }
  }
  return { context: fail(next, new ParseError(parse.error)), next: 'failed' }
}

/** The first pending action was carried out (or refused, or needs someone outside first). */
export function afterAct(context: AgentContext, output: ActOutcome, maxRepairs: number): Step {
  if (output.refused !== undefined) {
    if (context.repairs < maxRepairs) {
      const repaired = copyContext(context)
      repaired.messages = [
        ...context.messages,
        ...output.messages,
        ...skipRest(withoutFirst(context.pending)),
      ]
      repaired.pending = emptyList()
      repaired.repairs = context.repairs + 1
      repaired.phase = 'thinking'
      return { context: repaired, next: 'running', repair: output.refused }
    }
    return { context: fail(context, new LimitExceededError('launch', output.refused)), next: 'failed' }
  }
  const next = copyContext(context)
  if (output.suspend !== undefined) {
    next.awaiting = output.suspend
    return { context: next, next: 'external' }
  }
  if (output.messages.length > 0) next.messages = [...context.messages, ...output.messages]
  next.children = appendChildren(context.children, output.children)
  next.pending = withoutFirst(context.pending)
  next.busyMs = context.busyMs + (output.durationMs ?? 0)
  // Repairs count unusable replies in a row: an action that went through ends the row.
  next.repairs = 0
  return route(next)
}

/** The awaited children settled: their results (and errors) are one message, then the loop goes on. */
export function afterSettled(context: AgentContext, group: SettledGroup): Step {
  const { results, conflicts } = group
  const next = copyContext(context)
  next.messages = [...context.messages, childResultsMessage(results, context.waitCallId, conflicts)]
  if (conflicts.length > 0) next.conflicts = [...context.conflicts, ...conflicts]
  next.delivered = [...context.delivered, ...(context.waitingOn ?? [])]
  next.waitingOn = null
  next.waitCallId = null
  return route(next)
}

/** A person approved the call the agent waits on, or gave it the input it asked for: it runs the call. */
export function afterAnswer(context: AgentContext, value: AgentContext['answers'][string]): Step {
  const key = context.awaiting?.key
  if (key === undefined) return { context, next: 'external' }
  const next = copyContext(context)
  next.answers = { ...context.answers, [key]: value }
  next.awaiting = null
  next.phase = 'executing'
  return { context: next, next: 'running' }
}

/** A person rejected the call: the model is told, and the rest of its reply goes on. */
export function afterRejection(context: AgentContext, reason: string): Step {
  const next = copyContext(context)
  next.messages = [...context.messages, actionReply(context.pending[0]!, `rejected: ${reason}`)]
  next.pending = withoutFirst(context.pending)
  next.awaiting = null
  return route(next)
}

export function withMessage(context: AgentContext, from: string, text: string): AgentContext {
  const next = copyContext(context)
  next.inbox = [...context.inbox, { from, text }]
  return next
}

export function fail(context: AgentContext, error: unknown): AgentContext {
  const next = copyContext(context)
  next.error = toErrorInfo(error)
  next.endedAt = Date.now()
  return next
}

/**
 * Where an agent goes once a step's update is in its context: its next pending action decides.
 * `context` is the step's own new copy, finished here in place.
 */
function route(context: AgentContext): Step {
  const next = context.pending[0]
  if (next === undefined) {
    context.phase = 'thinking'
    return { context, next: 'running' }
  }
  if (next.action === 'finish') {
    context.result = next.result
    context.pending = emptyList()
    context.endedAt = Date.now()
    return { context, next: 'completed' }
  }
  if (next.action === 'wait_for_subagents') {
    waitFor(context, next)
    return { context, next: 'suspended' }
  }
  context.phase = 'executing'
  return { context, next: 'running' }
}

/** The messages that arrived while the agent was busy, delivered into the turn that just ran. */
function withInbox(context: AgentContext, output: ThinkOutcome): ChatMessage[] {
  if (output.inboxConsumed === 0) return context.messages
  return [...context.messages, inboxMessage(context.inbox.slice(0, output.inboxConsumed))]
}

/** The wait action leaves `pending`; with no ids it waits for every child not yet delivered. */
function waitFor(context: AgentContext, wait: Extract<Action, { action: 'wait_for_subagents' }>): void {
  let ids = wait.ids
  if (!ids) {
    const delivered = new Set(context.delivered)
    ids = context.children.map((child) => child.localId).filter((id) => !delivered.has(id))
  }
  context.waitingOn = ids
  context.waitCallId = wait.callId ?? null
  context.pending = withoutFirst(context.pending)
  context.repairs = 0
}

function appendChildren(children: ChildLink[], added: ChildLink[] | undefined): ChildLink[] {
  return added && added.length > 0 ? [...children, ...added] : children
}

function skipRest(actions: Action[]): ChatMessage[] {
  return actions.flatMap((action) =>
    action.callId ? [actionReply(action, 'skipped: an earlier action in the same reply was refused')] : [],
  )
}
