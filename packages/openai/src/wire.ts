import type { ChatMessage, ModelReply, TokenUsage, ToolCall, ToolSpec } from '@cohort/core'
import { ModelError } from '@cohort/core'
import type OpenAI from 'openai'

type WireMessage = OpenAI.Chat.Completions.ChatCompletionMessageParam
type WireTool = OpenAI.Chat.Completions.ChatCompletionTool

/** How actions travel: as native function calls, or as JSON in the reply's text. */
export type Protocol = 'tools' | 'text'

/** The conversation in the chat-completions format. */
export function toWireMessages(messages: readonly ChatMessage[], protocol: Protocol): WireMessage[] {
  return messages.map((message) => (protocol === 'tools' ? toolsMessage(message) : textMessage(message)))
}

function toolsMessage(message: ChatMessage): WireMessage {
  switch (message.role) {
    case 'assistant':
      if (!message.toolCalls?.length) return { role: 'assistant', content: message.content }
      return {
        role: 'assistant',
        content: message.content || null,
        tool_calls: message.toolCalls.map((call) => ({
          id: call.id,
          type: 'function',
          function: { name: call.name, arguments: argumentsText(call) },
        })),
      }
    case 'tool':
      return { role: 'tool', tool_call_id: message.toolCallId, content: message.content }
    default:
      return { role: message.role, content: message.content }
  }
}

/**
 * A server without tool calling rejects `tool` messages, so a history that holds native calls
 * (a run that switched protocol) is told as text.
 */
function textMessage(message: ChatMessage): WireMessage {
  switch (message.role) {
    case 'assistant': {
      const calls = message.toolCalls ?? []
      const actions = calls.map((call) => ({ action: call.name, ...parsedArguments(call) }))
      const content = [message.content, ...actions.map((action) => JSON.stringify(action))]
        .filter(Boolean)
        .join('\n')
      return { role: 'assistant', content }
    }
    case 'tool':
      return { role: 'user', content: `[result of ${message.toolCallId}] ${message.content}` }
    default:
      return { role: message.role, content: message.content }
  }
}

function argumentsText(call: ToolCall): string {
  return typeof call.arguments === 'string' ? call.arguments : JSON.stringify(call.arguments)
}

function parsedArguments(call: ToolCall): Record<string, unknown> {
  if (typeof call.arguments !== 'string') return call.arguments
  try {
    const value: unknown = JSON.parse(call.arguments)
    return value && typeof value === 'object' && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : {}
  } catch {
    return { arguments: call.arguments }
  }
}

export function toWireTools(tools: readonly ToolSpec[]): WireTool[] {
  return tools.map((tool) => ({
    type: 'function',
    function: { name: tool.name, description: tool.description, parameters: tool.parameters },
  }))
}

/** The reply of a non-streamed completion; a body that is not a completion is a clear error. */
export function fromCompletion(body: unknown): Omit<ModelReply, 'cost' | 'retries'> {
  const completion = body as Partial<OpenAI.Chat.Completions.ChatCompletion> | null
  const choice = Array.isArray(completion?.choices) ? completion.choices[0] : undefined
  // Some gateways answer 200 with `{ error: { message, code } }` (an upstream refusal or rate limit).
  const error = (body as { error?: { message?: unknown; code?: unknown } } | null)?.error
  if (!choice && typeof error?.message === 'string') {
    const status = typeof error.code === 'number' ? error.code : undefined
    throw new ModelError(`the server answered with an error: ${error.message}`, {
      ...(status !== undefined && { status }),
      retryable: status !== undefined && (status === 408 || status === 429 || status >= 500),
    })
  }
  if (!choice || typeof choice !== 'object' || !choice.message || typeof choice.message !== 'object') {
    throw new ModelError(
      `malformed response: expected a chat completion with choices[0].message, got ${describeBody(body)}`,
      { retryable: false },
    )
  }
  const reply: Omit<ModelReply, 'cost' | 'retries'> = { text: choice.message.content ?? '' }
  if (typeof choice.finish_reason === 'string') reply.finishReason = choice.finish_reason
  if (typeof choice.message.refusal === 'string' && choice.message.refusal)
    reply.refusal = choice.message.refusal
  // Some servers leave out `type`; any call that names a function is one.
  const calls = (choice.message.tool_calls ?? []).flatMap((call, index) => {
    const fn = (call as { function?: { name?: unknown; arguments?: unknown } }).function
    if (typeof fn?.name !== 'string') return []
    const args = typeof fn.arguments === 'string' ? fn.arguments : JSON.stringify(fn.arguments ?? {})
    return [{ id: call.id || `call_${index}`, name: fn.name, arguments: args }]
  })
  if (calls.length > 0) reply.toolCalls = calls
  const usage = fromUsage(completion?.usage)
  if (usage) reply.usage = usage
  return reply
}

export function fromUsage(usage: OpenAI.CompletionUsage | null | undefined): TokenUsage | undefined {
  if (!usage || typeof usage.prompt_tokens !== 'number') return undefined
  return { promptTokens: usage.prompt_tokens, completionTokens: usage.completion_tokens ?? 0 }
}

/** Puts streamed deltas back together: text fragments, and tool calls assembled by index. */
export class StreamAssembler {
  private text = ''
  private readonly calls = new Map<number, { id: string; name: string; arguments: string }>()
  private usage: TokenUsage | undefined
  private finishReason: string | undefined
  private refusal = ''
  private sawChoice = false
  private lastIndex = 0

  /** Adds one chunk; returns the text fragment it carried, if any. */
  add(chunk: OpenAI.Chat.Completions.ChatCompletionChunk): string {
    const usage = fromUsage(chunk.usage)
    if (usage) this.usage = usage
    const choice = chunk.choices?.[0]
    if (typeof choice?.finish_reason === 'string') this.finishReason = choice.finish_reason
    const delta = choice?.delta
    if (!delta) return ''
    this.sawChoice = true
    for (const part of delta.tool_calls ?? []) {
      const index = this.indexOf(part)
      const call = this.calls.get(index) ?? { id: '', name: '', arguments: '' }
      if (part.id) call.id = part.id
      // A name comes whole (servers that repeat it in each delta repeat it whole); arguments come in pieces.
      if (part.function?.name) call.name = part.function.name
      if (part.function?.arguments) call.arguments += part.function.arguments
      this.calls.set(index, call)
      this.lastIndex = index
    }
    if (typeof delta.refusal === 'string') this.refusal += delta.refusal
    const fragment = delta.content ?? ''
    this.text += fragment
    return fragment
  }

  /**
   * The call a delta belongs to: its `index`. Some servers leave it out: then a new `id` is a new
   * call, and a delta without one continues the last call.
   */
  private indexOf(part: { index?: number; id?: string }): number {
    if (typeof part.index === 'number') return part.index
    if (!part.id) return this.lastIndex
    for (const [index, call] of this.calls) if (call.id === part.id) return index
    // The id of a call whose first delta had none.
    if (this.calls.has(this.lastIndex) && !this.calls.get(this.lastIndex)?.id) return this.lastIndex
    return this.calls.size === 0 ? 0 : Math.max(...this.calls.keys()) + 1
  }

  reply(): Omit<ModelReply, 'cost' | 'retries'> {
    if (!this.sawChoice) throw new ModelError('malformed response: the stream carried no choices')
    const reply: Omit<ModelReply, 'cost' | 'retries'> = { text: this.text }
    const calls = [...this.calls.entries()]
      .sort(([a], [b]) => a - b)
      .map(([index, call]) => ({ ...call, id: call.id || `call_${index}` }))
    if (calls.length > 0) reply.toolCalls = calls
    if (this.usage) reply.usage = this.usage
    if (this.finishReason) reply.finishReason = this.finishReason
    if (this.refusal) reply.refusal = this.refusal
    return reply
  }
}

function describeBody(body: unknown): string {
  let text: string
  try {
    text = JSON.stringify(body) ?? String(body)
  } catch {
    text = String(body)
  }
  return text.length > 200 ? `${text.slice(0, 200)}…` : text
}
