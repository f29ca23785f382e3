import { type ErrorInfo, LimitExceededError, ParseError, toErrorInfo } from '../errors.js'
import type { ProcessRecord } from '../models/command-model.js'
import type { ChatMessage, TokenUsage } from '../models/types.js'
import type { Action, ActionOf, ParseResult } from '../protocol/actions.js'
import { actionReply, childResultsMessage, inboxMessage } from '../protocol/feedback.js'
import type { Conflict } from '../workspaces/workspaces.js'
import {
  type AgentContext,
  type Answer,
  type Awaiting,
  type ChildLink,
  type ChildResult,
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
  /** A token budget the call went over: the step books the reply, then fails the agent. */
  exceeded?: ErrorInfo
}

/** Children that settled, and files more than one of them changed in their workspaces. */
export interface SettledGroup {
  results: ChildResult[]
  conflicts: Conflict[]
}

export interface ActOutcome {
  messages: ChatMessage[]
  children?: ChildLink[]
  /** Set when the action was refused (a limit, a cycle, an id used twice): the rest of the reply is dropped. */
  refused?: string
  /** The limit that refused it, when one did. */
  refusedBy?: string
  /** Set when the action needs an approval or input from outside first. */
  suspend?: Awaiting
  durationMs?: number
}

/**
 * The outcome of one step of the think/act loop: the agent's next context. Where the agent goes
 * next is read from it by the agent machine's guards (`routing`): an error → failed, an end →
 * completed, `waitingOn` → suspended on children, `awaiting` → suspended on a person, pending
 * actions → acting, none → thinking.
 */
export interface Step {
  context: AgentContext
  /** Why the model is asked again (an unusable reply, a refused launch): an `agent.repair`. */
  repair?: string
}

// The think/act loop of `running`, as pure functions of the context and an effect's outcome.
// The agent machine applies them with `assign`; each returns a new context, never changes one.

/** A new agent's context once it starts. */
export function started(context: AgentContext, deadline: number | null, note?: string): AgentContext {
  const next = { ...context }
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
  const next = { ...context }
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
  if (output.exceeded) return { context: failed(next, { error: output.exceeded }) }
  if (parse.ok) {
    next.pending = parse.actions
    return route(next)
  }
  if (context.repairs < maxRepairs) {
    next.messages.push(...output.feedback)
    next.repairs = context.repairs + 1
    return { context: next, repair: parse.error }
  }
  return { context: fail(next, new ParseError(parse.error)) }
}

/** The first pending action was carried out (or refused, or needs someone outside first). */
export function afterAct(context: AgentContext, output: ActOutcome, maxRepairs: number): Step {
  if (output.refused !== undefined) {
    if (context.repairs < maxRepairs) {
      const repaired = { ...context }
      repaired.messages = [
        ...context.messages,
        ...output.messages,
        ...skipRest(withoutFirst(context.pending)),
      ]
      repaired.pending = emptyList()
      repaired.repairs = context.repairs + 1
      return { context: repaired, repair: output.refused }
    }
    const error =
      output.refusedBy === undefined
        ? new ParseError(output.refused)
        : new LimitExceededError(output.refusedBy, output.refused)
    return { context: fail(context, error) }
  }
  const next = { ...context }
  if (output.suspend !== undefined) {
    next.awaiting = output.suspend
    return { context: next }
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
  const next = { ...context }
  next.messages = [...context.messages, childResultsMessage(results, context.waitCallId, conflicts)]
  if (conflicts.length > 0) next.conflicts = [...context.conflicts, ...conflicts]
  next.delivered = [...context.delivered, ...(context.waitingOn ?? [])]
  next.waitingOn = null
  next.waitCallId = null
  return route(next)
}

/** A person approved the call the agent waits on, or gave it the input it asked for: it runs the call. */
export function afterAnswer(context: AgentContext, value: Answer): AgentContext {
  const key = context.awaiting?.key
  if (key === undefined) return context
  const next = { ...context }
  next.answers = { ...context.answers, [key]: value }
  next.awaiting = null
  return next
}

/** A person rejected the call: the model is told, and the rest of its reply goes on. */
export function afterRejection(context: AgentContext, reason: string): AgentContext {
  const next = { ...context }
  next.messages = [...context.messages, actionReply(context.pending[0]!, `rejected: ${reason}`)]
  next.pending = withoutFirst(context.pending)
  next.awaiting = null
  return route(next).context
}

/** A message joins the inbox; one with an id (from an agent's action) is remembered by it. */
export function withMessage(context: AgentContext, from: string, text: string, id?: string): AgentContext {
  const next = { ...context }
  next.inbox = [...context.inbox, { from, text }]
  if (id !== undefined) next.receivedMessages = [...context.receivedMessages, id]
  return next
}

export function fail(context: AgentContext, error: unknown): AgentContext {
  return failed(context, { error: toErrorInfo(error) })
}

/**
 * The context of an agent that failed with `error`. A process turn that failed (`process`) is kept
 * in its history and busy time as a good turn is: its exit code and stderr say why.
 */
export function failed(
  context: AgentContext,
  {
    error,
    process,
    busyMs = 0,
    retries = 0,
  }: { error: ErrorInfo; process?: ProcessRecord; busyMs?: number; retries?: number },
): AgentContext {
  const next = {
    ...context,
    error,
    endedAt: Date.now(),
    busyMs: context.busyMs + busyMs,
    retries: context.retries + retries,
  }
  if (process) {
    next.processes = [...context.processes, process]
    next.busyMs += process.durationMs
  }
  return next
}

/**
 * Finishes a step's context by its next pending action: `finish` ends the agent, a wait moves
 * into `waitingOn`. `context` is the step's own new copy, finished here in place.
 */
function route(context: AgentContext): Step {
  const next = context.pending[0]
  if (next?.action === 'finish') {
    context.result = next.result
    context.pending = emptyList()
    context.endedAt = Date.now()
  } else if (next?.action === 'wait_for_subagents') waitFor(context, next)
  return { context }
}

/** The messages that arrived while the agent was busy, delivered into the turn that just ran. */
function withInbox(context: AgentContext, output: ThinkOutcome): ChatMessage[] {
  if (output.inboxConsumed === 0) return context.messages
  return [...context.messages, inboxMessage(context.inbox.slice(0, output.inboxConsumed))]
}

/**
 * The wait action leaves `pending`; with no ids it waits for every child not yet delivered. An id
 * given twice is waited for, and reported, once.
 */
function waitFor(context: AgentContext, wait: ActionOf<'wait_for_subagents'>): void {
  let ids = wait.ids && [...new Set(wait.ids)]
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
