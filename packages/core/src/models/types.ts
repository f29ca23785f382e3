/** One message of an agent's conversation, in the shape of the OpenAI chat format. */
export type ChatMessage =
  | { role: 'system'; content: string }
  | { role: 'user'; content: string }
  | { role: 'assistant'; content: string; toolCalls?: ToolCall[] }
  | { role: 'tool'; content: string; toolCallId: string }

/** A native tool call as a model returns it; `arguments` is the raw JSON text (or already parsed). */
export interface ToolCall {
  id: string
  name: string
  arguments: string | Record<string, unknown>
}

/** A function offered to the model (protocol actions and the agent's tools), with a JSON schema. */
export interface ToolSpec {
  name: string
  description: string
  parameters: Record<string, unknown>
}

import type { ProcessRecord } from './process-record.js'

export interface TokenUsage {
  promptTokens: number
  completionTokens: number
}

export interface ModelRequest {
  runId: string
  agent: { id: string; name: string; depth: number; parentId: string | null; task: string }
  /** The number of model calls this agent made before this one (0 for its first turn). */
  turn: number
  messages: readonly ChatMessage[]
  tools: readonly ToolSpec[]
  signal: AbortSignal
  /** Called with each streamed text fragment when the model streams. */
  onToken?: (text: string) => void
  /** Called by a model that failed an attempt and will try again, before it waits (a `model.retrying` event). */
  onRetry?: (retry: ModelRetry) => void
  /** The agent's own workspace directory, created on first call (when the runtime has workspaces). */
  workspace?: () => Promise<string>
}

/** A failed attempt of a model call that the model makes again after `waitMs`. */
export interface ModelRetry {
  /** 1 for the first retry of the call. */
  retry: number
  maxRetries: number
  waitMs: number
  /** The failed attempt's HTTP status, when it had one. */
  status?: number
  /** What went wrong, e.g. `model m: HTTP 429: Rate limit reached for requests`. */
  error: string
}

export interface ModelReply {
  text?: string
  toolCalls?: ToolCall[]
  usage?: TokenUsage
  /**
   * `usage` is the model's estimate (about four characters a token), not the server's count: the
   * server sent none. Token budgets and metrics count it all the same.
   */
  usageEstimated?: boolean
  /** Cost of this call in the configured currency, when prices are known. */
  cost?: number
  /** Transient failures retried inside this call. */
  retries?: number
  /**
   * Why the model stopped, as the server said (`stop`, `tool_calls`, `length`…). `length`: the reply
   * was cut off at the output token limit (`max_tokens`); if it cannot be used, the model is told so.
   */
  finishReason?: string
  /**
   * The model declined to answer, with this text instead of content (OpenAI's `refusal`): when the
   * reply holds no action, the model is told its refusal was read.
   */
  refusal?: string
  /** Set by process agents: exit code, stderr tail, duration. */
  process?: ProcessRecord
}

/** Anything that answers a conversation: a scripted model, an OpenAI-compatible endpoint, a process. */
export interface ChatModel {
  readonly name: string
  /** Credentials this model holds; the runtime redacts them from everything a run records (not placeholders such as `ollama`). */
  readonly secrets?: readonly string[]
  /** Its cap on a reply's tokens (`max_tokens`), when it has one: part of a call's reserved estimate. */
  readonly maxTokens?: number
  /**
   * True when the model retries its own transient failures (the OpenAI adapter: it knows a
   * server's `Retry-After`); otherwise the runtime retries a `ModelError` that is `retryable`
   * (`scheduler.maxModelRetries`).
   */
  readonly handlesRetries?: boolean
  complete(request: ModelRequest): Promise<ModelReply>
}
