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
  /** The least time between two calls' starts across every process that shares the store, in ms. */
  startIntervalMs?: number
  /** The run's token budget, when it has one: counted in the store for every process that runs its agents. */
  budget?: SharedBudget
}

/** A run's `maxRunTokens`, counted in a shared store: its agents may run in several processes. */
export interface SharedBudget {
  runId: string
  /** Tokens the run may use. */
  max: number
  /**
   * The tokens the run has used as its stored records say: asked when the store holds no count
   * for the run yet (its first call there, or after the count lapsed).
   */
  spent(): Promise<number>
}

export type SharedStart =
  | {
      started: true
      /** The call ended having used `tokens`: its place is freed and its reservation settled. */
      end(tokens: number): void
    }
  | { started: false; retryInMs: number }
  /** The call's tokens do not fit in what is left of the run's budget: it must not start. */
  | { started: false; overBudget: { used: number } }

/**
 * Model-call limits counted in a store that several processes share, so that N workers together
 * stay within `rateLimits`, `maxConcurrentModelCalls`, `startIntervalMs` and each run's
 * `maxRunTokens` (`redisLimits` of @cohort/bullmq, which `createWorker` attaches). The buckets are `takeCall`/`settleCall` on state the store holds.
 */
export interface SharedLimits {
  /**
   * Starts the call if the shared limits allow it now, taking its place and its tokens (and its
   * estimate from the run's budget); otherwise says when to ask again, or that the budget is spent.
   */
  tryStart(call: SharedCall): Promise<SharedStart>
}
