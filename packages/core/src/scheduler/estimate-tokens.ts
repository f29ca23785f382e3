import type { ChatMessage, ToolSpec } from '../models/types.js'

/** About four characters a token, as for English text: the usual rule of thumb without a tokenizer. */
export function tokensOfText(characters: number): number {
  return Math.ceil(characters / 4)
}

/** Each message costs a few tokens of framing besides its text. */
const perMessage = 4

/** The functions offered to a model are the same array for every call of an agent kind: measured once. */
const toolSizes = new WeakMap<readonly ToolSpec[], number>()

export interface CallToEstimate {
  messages: readonly ChatMessage[]
  tools?: readonly ToolSpec[]
  /** The model's cap on a reply (`max_tokens`), when it has one. */
  maxTokens?: number | undefined
}

/**
 * What a model call is expected to use, reserved against token limits before it starts: its
 * prompt (messages and the functions offered, at four characters a token) plus the reply's cap
 * when the model has one. The scheduler reserves the larger of this and the average of the calls
 * of the same kind so far (`SlotRequest.kind`), so a model without a cap is covered by history.
 */
export function estimateTokens(call: CallToEstimate): number {
  let characters = 0
  for (const message of call.messages) {
    characters += message.content.length
    if (message.role === 'assistant' && message.toolCalls) {
      for (const toolCall of message.toolCalls) {
        characters +=
          toolCall.name.length +
          (typeof toolCall.arguments === 'string'
            ? toolCall.arguments.length
            : JSON.stringify(toolCall.arguments).length)
      }
    }
  }
  if (call.tools && call.tools.length > 0) {
    let size = toolSizes.get(call.tools)
    if (size === undefined) {
      size = JSON.stringify(call.tools).length
      toolSizes.set(call.tools, size)
    }
    characters += size
  }
  return tokensOfText(characters) + perMessage * call.messages.length + (call.maxTokens ?? 0)
}
