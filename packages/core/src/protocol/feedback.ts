import superjson from 'superjson'
import type { ChildResult } from '../agent/context.js'
import type { ChatMessage } from '../models/types.js'
import type { Conflict } from '../workspaces/workspaces.js'
import type { Action } from './actions.js'

/**
 * The message that answers one action: a `tool` message for a native call, else a `user` line.
 * Fields in the order a record read back has them (`chatMessageSchema`'s), so that a resumed
 * run's requests are an uninterrupted one's, key for key.
 */
export function actionReply(action: Action, content: string): ChatMessage {
  if (action.callId) return { role: 'tool', content, toolCallId: action.callId }
  const label = action.action === 'call_tool' ? `call_tool ${action.tool}` : action.action
  return { role: 'user', content: `[${label}] ${content}` }
}

/** Every awaited child's result or error, in one message. */
export function childResultsMessage(
  results: ChildResult[],
  callId: string | null,
  conflicts: Conflict[] = [],
): ChatMessage {
  let content =
    results.length === 0
      ? 'No sub-agents to wait for.'
      : `Sub-agents settled (${results.length}): ${renderResults(results)}`
  if (conflicts.length > 0) {
    content += `\nConflicts (files changed by more than one of them): ${JSON.stringify(conflicts)}`
  }
  return callId
    ? { role: 'tool', content, toolCallId: callId }
    : { role: 'user', content: `[wait_for_subagents] ${content}` }
}

/** Answers a reply that could not be used; native calls each get their own answer. */
export function repairFeedback(callIds: string[], text: string): ChatMessage[] {
  if (callIds.length === 0) return [{ role: 'user', content: text }]
  return callIds.map((id) => ({ role: 'tool', content: text, toolCallId: id }))
}

/**
 * Agents' results as a model reads them: each result's and error's keys in sorted order, so the
 * text is the same whether the results were kept in memory or read back from a store that keeps
 * keys in an order of its own (PostgreSQL's jsonb): a resumed run's prompts are an uninterrupted one's.
 */
export function renderResults(results: readonly ChildResult[]): string {
  const stable = results.map((child) => {
    const copy = { ...child }
    if ('result' in child) copy.result = withSortedKeys(child.result)
    if (child.error) copy.error = withSortedKeys(child.error) as NonNullable<ChildResult['error']>
    return copy
  })
  return renderValue(stable, Number.POSITIVE_INFINITY)
}

/** A copy of `value` whose plain objects, at any depth, have their keys sorted; other values as they are. */
function withSortedKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(withSortedKeys)
  if (value === null || typeof value !== 'object') return value
  const prototype = Object.getPrototypeOf(value)
  if (prototype !== Object.prototype && prototype !== null) return value
  const sorted: Record<string, unknown> = {}
  for (const key of Object.keys(value).sort())
    sorted[key] = withSortedKeys((value as Record<string, unknown>)[key])
  return sorted
}

/**
 * A value as JSON a model can read, never throwing, short enough for a prompt. What JSON cannot
 * hold (BigInt, Map, Set, Error, RegExp, a cycle) is shown as superjson's JSON shows it: a BigInt
 * as its digits in a string, a Map as its `[key, value]` entries, a Set as its items, an Error as
 * `{ name, message }`. Dates are ISO strings either way.
 */
export function renderValue(value: unknown, maxChars = 20_000): string {
  const text = typeof value === 'string' ? value : toJson(value)
  return text.length > maxChars
    ? `${text.slice(0, maxChars)}… (${text.length - maxChars} more characters)`
    : text
}

function toJson(value: unknown): string {
  let text: string | undefined
  try {
    text = JSON.stringify(value) ?? 'null'
    // Maps, Sets and Errors come out of JSON.stringify as `{}`: only then is superjson's (slower) walk needed.
    if (!text.includes('{}')) return text
  } catch {
    // A BigInt or a cycle.
  }
  try {
    return JSON.stringify(superjson.serialize(value).json) ?? 'null'
  } catch (error) {
    return text ?? `(a value that cannot be shown as JSON: ${(error as Error).message})`
  }
}

/** Messages that arrived while the agent was busy, as one user message for its next turn. */
export function inboxMessage(inbox: { from: string; text: string }[]): ChatMessage {
  return { role: 'user', content: inbox.map((m) => `[message from ${m.from}] ${m.text}`).join('\n') }
}
