import { ModelError } from '@cohort/core'
import OpenAI from 'openai'

/**
 * The answer as the SDK should read it. Some gateways answer an upstream rate limit or outage with
 * 200 and `{ error: { message, code } }`: given its code as the status, it is retried as the real
 * one is. The SDK reads an error's message only from `{ error: { message } }`: vLLM's
 * `{ object: 'error', message }`, FastAPI's `{ detail }` and TGI's `{ error: '…' }` are given to
 * it in that shape, so their message is in the ModelError and a refusal of tools is recognised.
 */
export async function withErrorStatus(response: Response): Promise<Response> {
  if (response.status === 200 && !response.headers.get('content-type')?.includes('application/json'))
    return response
  if (response.status !== 200 && response.ok) return response
  const text = await response.text()
  let body: unknown
  try {
    body = JSON.parse(text)
  } catch {
    // Not JSON after all: the SDK reports it.
  }
  if (response.status === 200) {
    const answer = body as { choices?: unknown; error?: { code?: unknown } } | null | undefined
    const code = answer && answer.choices === undefined ? answer.error?.code : undefined
    const status =
      typeof code === 'number' && (code === 408 || code === 429 || (code >= 500 && code < 600)) ? code : 200
    return new Response(text, { status, headers: response.headers })
  }
  // A proxy's HTML page (nginx's 503) is cut to its title or a short excerpt, not put whole in every log line.
  const message = body === undefined ? excerptOf(text) : errorMessageOf(body)
  if (message === undefined) return new Response(text, { status: response.status, headers: response.headers })
  const error = { ...(body && typeof body === 'object' ? body : {}), message }
  return new Response(JSON.stringify({ error }), { status: response.status, headers: response.headers })
}

/** A short excerpt of an error body that is not JSON: an HTML page's title, or its text's beginning. */
function excerptOf(text: string): string | undefined {
  const title = /<title[^>]*>([^<]*)<\/title>/i.exec(text)?.[1]?.trim()
  const plain = (title || text.replace(/<[^>]*>/g, ' ')).replace(/\s+/g, ' ').trim()
  if (!plain) return undefined
  return plain.length > 200 ? `${plain.slice(0, 200)}…` : plain
}

/** The message of an error body the SDK would not find one in (it reads only `error.message`). */
function errorMessageOf(body: unknown): string | undefined {
  if (!body || typeof body !== 'object') return undefined
  const { error, message, detail } = body as { error?: unknown; message?: unknown; detail?: unknown }
  if (error && typeof error === 'object') return undefined
  if (typeof error === 'string') return error
  if (typeof message === 'string') return message
  if (typeof detail === 'string') return detail
  if (Array.isArray(detail)) {
    return detail
      .map((item: { loc?: unknown; msg?: unknown }) => {
        const where = Array.isArray(item?.loc) ? `${item.loc.join('.')}: ` : ''
        return typeof item?.msg === 'string' ? `${where}${item.msg}` : JSON.stringify(item)
      })
      .join('; ')
  }
  return undefined
}

/** Node's and undici's codes of a connection the other side closed or reset. */
const closedCodes = new Set(['UND_ERR_SOCKET', 'ECONNRESET', 'EPIPE', 'UND_ERR_CLOSED'])

/** The SDK's errors as Cohort's: status and the server's message, and whether a retry could help. */
export function toModelError(error: unknown, model: string, retries: number, baseURL: string): ModelError {
  const after = retries > 0 ? ` (after ${retries} ${retries === 1 ? 'retry' : 'retries'})` : ''
  if (error instanceof ModelError) return named(error, model, after, retries)
  if (error instanceof OpenAI.APIConnectionTimeoutError) {
    return new ModelError(`model ${model}: the request timed out${after}`, {
      retryable: true,
      cause: error,
      retries,
    })
  }
  // The SDK says only "Connection error."; its innermost cause says why (ECONNREFUSED, a DNS failure).
  // A connection closed while the body was read, after the headers, is undici's TypeError('terminated')
  // with the same cause: the same failure, as retryable while no token was sent.
  const cause = innermostCause(error)
  const closed = typeof cause.code === 'string' && closedCodes.has(cause.code)
  if (error instanceof OpenAI.APIConnectionError || (closed && error instanceof TypeError)) {
    const code = typeof cause.code === 'string' ? cause.code : undefined
    const why = code
      ? closed
        ? `the server closed the connection before the reply was complete (${code})`
        : code
      : String(cause.message ?? (error as Error).message)
    return new ModelError(`model ${model}: connection to ${baseURL} failed${after}: ${why}`, {
      retryable: true,
      cause: error,
      retries,
    })
  }
  // An error event in a stream has no HTTP status: its code, when it is one, says what it was.
  const streamed = error instanceof OpenAI.APIError && error.status === undefined
  const status = error instanceof OpenAI.APIError ? (error.status ?? statusOfCode(error.error)) : undefined
  if (error instanceof OpenAI.APIError && status !== undefined) {
    // A 429 of a spent quota is a billing limit: it does not clear by waiting.
    const quota = status === 429 && isQuotaError(error)
    const hint =
      status === 404 && !streamed
        ? ` (at ${baseURL}; an OpenAI-compatible base URL usually ends in /v1)`
        : quota
          ? ' (insufficient_quota: the account is out of credit or over its spending limit; not retried)'
          : ''
    const what = streamed ? `error ${status} in the stream` : `HTTP ${status}`
    return new ModelError(`model ${model}: ${what}${after}: ${serverMessage(error)}${hint}`, {
      status,
      retryable: !quota && (status === 408 || status === 409 || status === 429 || status >= 500),
      cause: error,
      retries,
    })
  }
  if (error instanceof SyntaxError) {
    return new ModelError(`model ${model}: malformed response, the body is not JSON: ${error.message}`, {
      cause: error,
    })
  }
  const message = error instanceof Error ? error.message : String(error)
  return new ModelError(`model ${model}: ${message}`, { cause: error })
}

/**
 * A ModelError thrown inside an attempt (a body that is no completion, a stalled stream) with the
 * model's name in front, as every other failure of a call has, and its retries counted.
 */
function named(error: ModelError, model: string, after: string, retries: number): ModelError {
  const prefix = `model ${model}: `
  if (error.message.startsWith(prefix) && error.retries === retries) return error
  const message = error.message.startsWith(prefix) ? error.message.slice(prefix.length) : error.message
  return new ModelError(`${prefix}${message}${after}`, {
    ...(error.status !== undefined && { status: error.status }),
    retryable: error.retryable,
    cause: error.cause,
    retries,
  })
}

function innermostCause(error: unknown): { code?: unknown; message?: unknown } {
  if (!error || typeof error !== 'object') return {}
  let cause: { cause?: unknown; code?: unknown; message?: unknown } = error
  while (cause.cause && typeof cause.cause === 'object') cause = cause.cause
  return cause
}

/** The HTTP status an error body's `code` names (`{ error: { code: 503 } }`), if it names one. */
function statusOfCode(body: unknown): number | undefined {
  const code = (body as { code?: unknown } | null | undefined)?.code
  const status = typeof code === 'string' && /^\d{3}$/.test(code) ? Number(code) : code
  return typeof status === 'number' && Number.isInteger(status) && status >= 400 && status < 600
    ? status
    : undefined
}

function isQuotaError(error: InstanceType<typeof OpenAI.APIError>): boolean {
  const body = error.error as { code?: unknown; type?: unknown } | undefined
  return (
    error.code === 'insufficient_quota' ||
    body?.code === 'insufficient_quota' ||
    body?.type === 'insufficient_quota'
  )
}

function serverMessage(error: InstanceType<typeof OpenAI.APIError>): string {
  const body = error.error as { message?: unknown } | undefined
  if (body && typeof body.message === 'string') return body.message
  return error.message.replace(/^\d{3}\s*/, '') || 'no message'
}
