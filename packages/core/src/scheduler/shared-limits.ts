import type { RateLimit } from './rate-buckets.js'

/** One model call asking a shared store for a place. */
export interface SharedCall {
  model: string
  /** Tokens reserved for the call (its estimate), settled by `end`. */
  tokens: number
  /** The model's per-minute limits, when it has any. */
  rate: RateLimit | undefined
  /** Calls in flight allowed across every process that shares the store; undefined: no limit. */
  maxConcurrent: number | undefined
}

export type SharedStart =
  | {
      started: true
      /** The call ended having used `tokens`: its place is freed and its reservation settled. */
      end(tokens: number): void
    }
  | { started: false; retryInMs: number }

/**
 * Model-call limits counted in a store that several processes share, so that N workers together
 * stay within `rateLimits` and `maxConcurrentModelCalls` (`redisLimits` of @cohort/bullmq, which
 * `createWorker` attaches). The buckets are `takeCall`/`settleCall` on state the store holds.
 */
export interface SharedLimits {
  /** Starts the call if the shared limits allow it now, taking its place and its tokens; otherwise says when to ask again. */
  tryStart(call: SharedCall): Promise<SharedStart>
}
