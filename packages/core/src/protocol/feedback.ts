import type { ChildResult } from '../agent/context.js'
import type { ChatMessage } from '../models/types.js'
import type { Conflict } from '../workspaces/workspaces.js'
import type { Action } from './actions.js'
import { renderValue } from './render-value.js'

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

/** Messages that arrived while the agent was busy, as one user message for its next turn. */
export function inboxMessage(inbox: { from: string; text: string }[]): ChatMessage {
  return { role: 'user', content: inbox.map((m) => `[message from ${m.from}] ${m.text}`).join('\n') }
}
