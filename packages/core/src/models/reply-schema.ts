import { z } from 'zod'
import { ModelError } from '../errors.js'
import { processRecordSchema } from './process-record.js'
import type { ModelReply } from './types.js'

const count = z.number().int().min(0)

/**
 * What a `ChatModel` must answer: checked where the reply enters the runtime, so that a model
 * adapter's slip (a tool call with no id, usage as text) fails its call with the field, instead of
 * reaching the agent's record and making it unreadable later.
 */
export const modelReplySchema = z.looseObject({
  text: z.string().optional(),
  toolCalls: z
    .array(
      z.object({
        id: z.string().min(1),
        name: z.string(),
        arguments: z.union([z.string(), z.record(z.string(), z.unknown())]),
      }),
    )
    .optional(),
  usage: z.object({ promptTokens: count, completionTokens: count }).optional(),
  usageEstimated: z.boolean().optional(),
  cost: z.number().min(0).optional(),
  retries: count.optional(),
  finishReason: z.string().optional(),
  refusal: z.string().optional(),
  process: processRecordSchema.optional(),
})

/** `reply`, if it is one; a `ModelError` naming the model and the first wrong field otherwise. */
export function checkModelReply(model: string, reply: unknown): ModelReply {
  const checked = modelReplySchema.safeParse(reply)
  if (checked.success) return reply as ModelReply
  const issue = checked.error.issues[0]!
  const field = issue.path.join('.') || '(the reply)'
  throw new ModelError(
    `model ${model} returned a malformed reply: ${field}: ${issue.message}; expected { text?, toolCalls?: [{ id, name, arguments }], usage?: { promptTokens, completionTokens } }`,
  )
}
