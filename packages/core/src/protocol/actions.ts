/** One sub-agent to start, as the model asks for it. */
export interface LaunchSpec {
  agent: string
  task: string
  /** The parent's name for this child; generated when the model gives none. */
  id?: string
  /** Sibling ids that must complete before this child starts. */
  depends_on?: string[]
  /** Higher is served first when model calls queue up (default: the agent definition's, else 0). */
  priority?: number
  /** Wall-clock limit for this child, in ms. */
  timeout_ms?: number
  /** What the parent receives if this child times out. */
  fallback?: unknown
}

/** What an agent does next, parsed from its model's reply. `callId` is the native tool call it came from. */
export type Action = (
  | { action: 'launch_subagents'; agents: LaunchSpec[]; on_cycle?: 'refuse' | 'sequential' }
  | { action: 'wait_for_subagents'; ids?: string[] }
  | { action: 'call_tool'; tool: string; args: unknown }
  | { action: 'finish'; result: unknown }
  | { action: 'send_message'; to: string; text: string }
) & {
  /** The native tool call this action came from; its answer is a `tool` message. */
  callId?: string
  /** `turn.index`: where the action stands in the agent's history; tools' idempotency keys use it. */
  key?: string
}

export type ActionName = Action['action']

/** A parser result is data, never an exception for bad model output. */
export type ParseResult = { ok: true; actions: Action[] } | { ok: false; error: string }

/** Ids a child may have: they appear in prompts, logs, file names and URLs. */
export const childIdPattern = /^[a-zA-Z0-9_-]{1,48}$/
