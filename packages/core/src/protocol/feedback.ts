import type { ChildResult } from '../agent/context.js'
import type { ChatMessage } from '../models/types.js'
import type { Conflict } from '../workspaces/workspaces.js'
import type { Action } from './actions.js'

/** The message that answers one action: a `tool` message for a native call, else a `user` line. */
export function actionReply(action: Action, content: string): ChatMessage {
  if (action.callId) return { role: 'tool', toolCallId: action.callId, content }
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
      : `Sub-agents settled (${results.length}): ${JSON.stringify(results)}`
  if (conflicts.length > 0) {
    content += `\nConflicts (files changed by more than one of them): ${JSON.stringify(conflicts)}`
  }
  return callId
    ? { role: 'tool', toolCallId: callId, content }
    : { role: 'user', content: `[wait_for_subagents] ${content}` }
}

/** Answers a reply that could not be used; native calls each get their own answer. */
export function repairFeedback(callIds: string[], text: string): ChatMessage[] {
  if (callIds.length === 0) return [{ role: 'user', content: text }]
  return callIds.map((id) => ({ role: 'tool', toolCallId: id, content: text }))
}

/** A JSON rendering that never throws (cycles, BigInt) and stays short enough for a prompt. */
export function renderValue(value: unknown, maxChars = 20_000): string {
  let text: string
  try {
    text = typeof value === 'string' ? value : (JSON.stringify(value) ?? 'null')
  } catch {
    text = String(value)
  }
  return text.length > maxChars
    ? `${text.slice(0, maxChars)}… (${text.length - maxChars} more characters)`
    : text
}

/** Messages that arrived while the agent was busy, as one user message for its next turn. */
export function inboxMessage(inbox: { from: string; text: string }[]): ChatMessage {
  return { role: 'user', content: inbox.map((m) => `[message from ${m.from}] ${m.text}`).join('\n') }
}
