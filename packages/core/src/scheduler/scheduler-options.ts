import { z } from 'zod'
import { maxTimeoutMs } from '../agent/limits.js'
import { InvalidInputError } from '../errors.js'
import type { RateLimit } from './rate-buckets.js'

export interface SchedulerOptions {
  /** Model calls in flight across the runtime (default: unlimited). */
  maxConcurrentModelCalls?: number
  /**
   * Agents at work at once across the runtime, a model call or a tool call each (default:
   * unlimited); an agent waiting on its children or a person holds no place (`AgentSlots`). The
   * place is taken before the model call's slot: one waiting on a rate limit holds its place.
   */
  maxConcurrentAgents?: number
  /** Per model name (`ChatModel.name`): token buckets, see `rate-buckets.ts`. */
  rateLimits?: Record<string, RateLimit>
  /** Least time between the starts of two model calls, in ms (in this process). */
  startIntervalMs?: number
  /**
   * Retries of a model call's transient failures (a `ModelError` that is `retryable`), after the
   * wait it asks for or a backoff of 0.5 s doubling to 8 s (default 3). A model that retries its
   * own calls (`ChatModel.handlesRetries`, as the OpenAI adapter) is left to do so.
   */
  maxModelRetries?: number
}

const atLeastOne = z.union([z.number().int().min(1), z.literal(Number.POSITIVE_INFINITY)])
const perMinute = z.union([z.number().positive(), z.literal(Number.POSITIVE_INFINITY)])
const schedulerOptionsSchema = z.strictObject({
  maxConcurrentModelCalls: atLeastOne.optional(),
  maxConcurrentAgents: atLeastOne.optional(),
  startIntervalMs: z.number().min(0).max(maxTimeoutMs).optional(),
  maxModelRetries: z.number().int().min(0).max(100).optional(),
  rateLimits: z
    .record(
      z.string(),
      z.strictObject({ requestsPerMinute: perMinute.optional(), tokensPerMinute: perMinute.optional() }),
    )
    .optional(),
})

/** Refuses options that would hold every call for ever (a limit of 0) or mean nothing, naming the field. */
export function checkSchedulerOptions(options: SchedulerOptions): void {
  const checked = schedulerOptionsSchema.safeParse(options)
  if (checked.success) return
  const issue = checked.error.issues[0]!
  throw new InvalidInputError(
    `invalid scheduler option ${issue.path.join('.') || '(root)'}: ${issue.message}; expected maxConcurrentModelCalls and maxConcurrentAgents as whole numbers from 1 (or Infinity), startIntervalMs as ms from 0, maxModelRetries as a whole number from 0 to 100, rateLimits as { [model]: { requestsPerMinute?, tokensPerMinute? } } above 0`,
  )
}
