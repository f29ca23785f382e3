import { ModelError } from '@cohort/core'

/** The wait a failed response asked for before the next attempt, in ms, if it asked. */
export function askedWaitMs(error: unknown): number | undefined {
  const headers = headersOf(error)
  const ms = Number.parseFloat(headers?.get('retry-after-ms') ?? '')
  if (Number.isFinite(ms) && ms >= 0) return ms
  const after = headers?.get('retry-after')
  if (!after) return undefined
  const secs = Number.parseFloat(after)
  if (Number.isFinite(secs)) return Math.max(0, secs * 1000)
  const date = Date.parse(after)
  return Number.isNaN(date) ? undefined : Math.max(0, date - Date.now())
}

/** A server may say not to retry (`x-should-retry: false`), as the openai SDK obeys: the failure is then final. */
export function asTheServerSays(error: unknown, failure: ModelError): ModelError {
  if (!failure.retryable || headersOf(error)?.get('x-should-retry') !== 'false') return failure
  return new ModelError(failure.message, {
    ...(failure.status !== undefined && { status: failure.status }),
    cause: failure.cause,
    retries: failure.retries,
  })
}

function headersOf(error: unknown): Headers | undefined {
  const headers = (error as { headers?: unknown } | null)?.headers
  return headers instanceof Headers ? headers : undefined
}
