import type { RateState } from './rate-buckets.js'
import type { TokenBudget } from './token-budget.js'

// What a model call asks of the scheduler, what it decides, and what it knows of calls alike.

export interface SlotRequest {
  priority: number
  model: string
  /** A queued call leaves the queue when its effect is aborted. */
  signal: AbortSignal
  /** Tokens the call is expected to use (`estimateTokens`), reserved before it starts. */
  estimatedTokens?: number
  /** Calls alike (an agent kind): each is expected to use at least what they used on average. */
  kind?: string
  /** The run's budget: the call reserves in it before it starts and settles on `release`. */
  budget?: TokenBudget
}

/** What the calls of one kind on one model used: the next is expected to use as much. */
export interface KindStats {
  ended: number
  counted: number
  tokens: number
  inFlight: number
}

/** May a call start: now (with its reservation), after a time, after some call ends, or never. */
export type Admission = Go | { go: false; until: number; on: unknown } | { go: false; error: unknown }

export interface Go {
  go: true
  reserve: number
  /** The model's buckets once this call has taken its share (limits counted here). */
  rate: RateState | undefined
  stats: KindStats | undefined
  /** The shared store must still say yes. */
  shared: boolean
}

/** Most calls meet no limit: one answer for all of them, nothing made per call. */
export const free: Go = { go: true, reserve: 0, rate: undefined, stats: undefined, shared: false }

/** What blocks every call while the least time between starts has not passed. */
export const spacing = Symbol('startIntervalMs')

/** The stats of `request`'s model and kind, made on first use. */
export function kindStats(kinds: Map<string, KindStats>, request: SlotRequest): KindStats {
  const key = kindKey(request)
  let stats = kinds.get(key)
  if (!stats) {
    stats = { ended: 0, counted: 0, tokens: 0, inFlight: 0 }
    kinds.set(key, stats)
  }
  return stats
}

function kindKey(request: SlotRequest): string {
  return request.kind === undefined ? request.model : `${request.model}\u0000${request.kind}`
}
