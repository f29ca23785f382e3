/** A model's per-minute limits (by `ChatModel.name`). */
export interface RateLimit {
  requestsPerMinute?: number
  tokensPerMinute?: number
}

/**
 * A model's two token buckets, each kept as the time (ms) at which it is full again: GCRA's
 * "theoretical arrival time". A time in the past means a full bucket. Plain numbers, so a store
 * that several workers share (Redis) keeps them and runs the same functions on them.
 */
export interface RateState {
  requestsFullAt: number
  tokensFullAt: number
}

export const fullBuckets: RateState = { requestsFullAt: 0, tokensFullAt: 0 }

interface Bucket {
  /** How long one token takes to come back. */
  msPerToken: number
  /** How many tokens the bucket holds. */
  burst: number
}

const minute = 60_000

/**
 * Requests hold one second's worth (at least one), so calls are spread over the minute, as
 * providers enforce per-minute limits over shorter periods. Tokens hold a minute's worth, so a
 * call as large as the limit can still pass.
 */
function requestBucket(limit: RateLimit): Bucket | undefined {
  const perMinute = limit.requestsPerMinute
  if (perMinute === undefined) return undefined
  return { msPerToken: minute / perMinute, burst: Math.max(1, Math.floor(perMinute / 60)) }
}

function tokenBucket(limit: RateLimit): Bucket | undefined {
  const perMinute = limit.tokensPerMinute
  if (perMinute === undefined) return undefined
  return { msPerToken: minute / perMinute, burst: perMinute }
}

/** How long until `cost` fits (a cost above the burst waits for a full bucket); 0 when it fits now. */
function waitFor(fullAt: number, bucket: Bucket, cost: number, now: number): number {
  const untilFull = Math.max(fullAt, now) - now
  const room = (bucket.burst - Math.min(cost, bucket.burst)) * bucket.msPerToken
  return Math.max(0, untilFull - room)
}

function take(fullAt: number, bucket: Bucket, cost: number, now: number): number {
  return Math.max(fullAt, now) + cost * bucket.msPerToken
}

export type RateDecision = { ok: true; state: RateState } | { ok: false; waitMs: number }

/** One call of `tokens` (reserved, an estimate) starts now if both buckets have room; otherwise how long to wait. */
export function takeCall(state: RateState, limit: RateLimit, tokens: number, now: number): RateDecision {
  const requests = requestBucket(limit)
  const tokenLimit = tokenBucket(limit)
  const waitMs = Math.max(
    requests ? waitFor(state.requestsFullAt, requests, 1, now) : 0,
    tokenLimit ? waitFor(state.tokensFullAt, tokenLimit, tokens, now) : 0,
  )
  if (waitMs > 0) return { ok: false, waitMs }
  return {
    ok: true,
    state: {
      requestsFullAt: requests ? take(state.requestsFullAt, requests, 1, now) : state.requestsFullAt,
      tokensFullAt: tokenLimit ? take(state.tokensFullAt, tokenLimit, tokens, now) : state.tokensFullAt,
    },
  }
}

/**
 * A call ended having used `used` tokens of the `reserved` it took: the difference goes back to
 * the bucket, or is taken from it. A refund never fills a bucket past full (`takeCall` counts a
 * time in the past as now).
 */
export function settleCall(state: RateState, limit: RateLimit, reserved: number, used: number): RateState {
  const tokenLimit = tokenBucket(limit)
  if (!tokenLimit || used === reserved) return state
  return { ...state, tokensFullAt: state.tokensFullAt + (used - reserved) * tokenLimit.msPerToken }
}

/** When both buckets are full again: a store may forget the state then. */
export function fullAgainAt(state: RateState): number {
  return Math.max(state.requestsFullAt, state.tokensFullAt)
}
