import { setTimeout as sleep } from 'node:timers/promises'
import { ModelError, type ModelRetry } from '@cohort/core'

/** The longest wait before a retry Cohort accepts from a server's `Retry-After`. */
export const maxRetryWaitMs = 60_000

export interface RetryOptions {
  maxRetries: number
  /** A server that asks for a longer wait fails the call at once. */
  maxWaitMs: number
  /** Ends the wait before a retry: a cancelled run is not kept alive by it. */
  signal: AbortSignal
  onRetry?: ((retry: ModelRetry) => void) | undefined
}

/**
 * Runs `attempt` until it succeeds or fails for good. `fail` turns what it threw into a ModelError
 * naming the retries made; a retryable one is tried again after the wait the server asked for
 * (`retry-after-ms`, `Retry-After` in seconds or as a date) or a backoff of 0.5 s doubling to 8 s.
 * An attempt calls `began` once it may not be retried (a streamed reply whose fragments were sent).
 */
export async function retrying<T>(
  attempt: (began: () => void) => Promise<T>,
  fail: (error: unknown, retries: number) => ModelError,
  options: RetryOptions,
): Promise<{ value: T; retries: number }> {
  for (let retries = 0; ; retries++) {
    let final = false
    try {
      return { value: await attempt(() => (final = true)), retries }
    } catch (error) {
      if (options.signal.aborted) throw options.signal.reason ?? error
      const failure = fail(error, retries)
      if (final || !failure.retryable || retries >= options.maxRetries || !serverAllows(error)) throw failure
      const asked = askedWaitMs(headersOf(error))
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

/** The wait a response asked for before the next attempt, in ms, if it asked. */
export function askedWaitMs(headers: Headers | undefined): number | undefined {
  const ms = Number.parseFloat(headers?.get('retry-after-ms') ?? '')
  if (Number.isFinite(ms) && ms >= 0) return ms
  const after = headers?.get('retry-after')
  if (!after) return undefined
  const secs = Number.parseFloat(after)
  if (Number.isFinite(secs)) return Math.max(0, secs * 1000)
  const date = Date.parse(after)
  return Number.isNaN(date) ? undefined : Math.max(0, date - Date.now())
}

/** 0.5 s doubling with each retry up to 8 s, less up to a quarter at random, as the openai SDK waits. */
function backoffMs(retries: number): number {
  return Math.min(500 * 2 ** retries, 8_000) * (1 - Math.random() * 0.25)
}

/** A server may say whether to retry (`x-should-retry`), as the openai SDK obeys. */
function serverAllows(error: unknown): boolean {
  return headersOf(error)?.get('x-should-retry') !== 'false'
}

function headersOf(error: unknown): Headers | undefined {
  const headers = (error as { headers?: unknown } | null)?.headers
  return headers instanceof Headers ? headers : undefined
}

function seconds(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000} s` : `${(ms / 1000).toFixed(1)} s`
}
