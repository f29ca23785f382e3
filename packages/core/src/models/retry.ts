import { setTimeout as sleep } from 'node:timers/promises'
import { ModelError } from '../errors.js'
import type { ModelRetry } from './types.js'

/** Retries of a model call's transient failures, unless the model or the runtime says otherwise. */
export const defaultMaxRetries = 3

/** The longest wait before a retry Cohort accepts from a server (`Retry-After`). */
export const maxRetryWaitMs = 60_000

export interface RetryOptions {
  maxRetries: number
  /** A failure asking for a longer wait fails the call at once. */
  maxWaitMs: number
  /** Ends the wait before a retry: a cancelled run is not kept alive by it. */
  signal: AbortSignal
  onRetry?: ((retry: ModelRetry) => void) | undefined
  /** The wait a failure asked for before the next attempt, in ms (default: its `retryAfterMs`). */
  askedWaitMs?: (error: unknown) => number | undefined
}

/**
 * Runs `attempt` until it succeeds or fails for good. `fail` gives what the call fails with after
 * `retries` retries; a `ModelError` that is `retryable` is tried again after the wait it asked for
 * or a backoff of 0.5 s doubling to 8 s. An attempt calls `began` once it may not be retried (a
 * streamed reply whose fragments were shown).
 */
export async function retrying<T>(
  attempt: (began: () => void) => Promise<T>,
  fail: (error: unknown, retries: number) => unknown,
  options: RetryOptions,
): Promise<{ value: T; retries: number }> {
  for (let retries = 0; ; retries++) {
    let final = false
    try {
      return { value: await attempt(() => (final = true)), retries }
    } catch (error) {
      if (options.signal.aborted) throw options.signal.reason ?? error
      const failure = fail(error, retries)
      if (final || !(failure instanceof ModelError && failure.retryable) || retries >= options.maxRetries)
        throw failure
      const said = options.askedWaitMs ? options.askedWaitMs(error) : failure.retryAfterMs
      // A wait that is no number (NaN) asks for nothing; a longer one than Cohort waits fails below.
      const asked = said === undefined || Number.isNaN(said) ? undefined : Math.max(0, said)
      if (asked !== undefined && asked > options.maxWaitMs) {
        throw new ModelError(
          `${failure.message}; the server asked to wait ${seconds(asked)} before a retry, longer than the ${seconds(options.maxWaitMs)} Cohort waits at most, so the call fails now`,
          { ...(failure.status !== undefined && { status: failure.status }), cause: error, retries },
        )
      }
      const waitMs = Math.max(0, Math.round(asked ?? backoffMs(retries)))
      const retry: ModelRetry = {
        retry: retries + 1,
        maxRetries: options.maxRetries,
        waitMs,
        error: failure.message,
      }
      if (failure.status !== undefined) retry.status = failure.status
      options.onRetry?.(retry)
      await sleep(waitMs, undefined, { signal: options.signal }).catch(() => {
        throw options.signal.reason ?? failure
      })
    }
  }
}

/**
 * A model's failure after `retries` retries, as the runtime's retries report it: a `ModelError`
 * says how many were made; anything else (a bug in an adapter) is what it was, and never retried.
 */
export function afterRetries(error: unknown, retries: number): unknown {
  if (!(error instanceof ModelError) || retries === 0) return error
  return new ModelError(`${error.message} (after ${retries} ${retries === 1 ? 'retry' : 'retries'})`, {
    ...(error.status !== undefined && { status: error.status }),
    retryable: error.retryable,
    cause: error,
    ...(error.process && { process: error.process }),
    ...(error.retryAfterMs !== undefined && { retryAfterMs: error.retryAfterMs }),
    retries,
  })
}

/** 0.5 s doubling with each retry up to 8 s, less up to a quarter at random, as the openai SDK waits. */
function backoffMs(retries: number): number {
  return Math.min(500 * 2 ** retries, 8_000) * (1 - Math.random() * 0.25)
}

function seconds(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000} s` : `${(ms / 1000).toFixed(1)} s`
}
