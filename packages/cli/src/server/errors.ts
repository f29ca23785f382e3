import { CohortError, RunBusyError } from '@cohort/core'
import type { Context, ErrorHandler } from 'hono'
import { HTTPException } from 'hono/http-exception'
import type { ContentfulStatusCode } from 'hono/utils/http-status'
import type { z } from 'zod'

/** A refusal with the status and the message the client gets as `{ error }`. */
export class HttpError extends Error {
  constructor(
    readonly status: ContentfulStatusCode,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message)
  }
}

/**
 * A request refused for who sent it (401: no token or a wrong one; 403: a foreign Host or Origin),
 * for the server's operator to see. `path` is as sent (percent-encoded) without its query, and
 * `reason` never has the token.
 */
export interface Refusal {
  method: string
  path: string
  status: 401 | 403
  reason: string
}

/** The refusal an error is, when it is one of who sent the request. */
export function refusalOf(error: unknown, c: Context): Refusal | undefined {
  if (!(error instanceof HttpError) || (error.status !== 401 && error.status !== 403)) return undefined
  // The path as sent, still percent-encoded: decoded, a `%0A` or `%1B` would put a line or a
  // terminal escape of the client's choosing into the server's console.
  const path = new URL(c.req.url).pathname
  return { method: c.req.method, path, status: error.status, reason: error.message }
}

/** The one place an error becomes a response: `{ error }` with the status its kind calls for. */
export const onError: ErrorHandler = (error, c) => {
  const [status, message, headers] = describeError(error)
  return c.json({ error: message }, status, { 'cache-control': 'no-store', ...headers })
}

function describeError(error: unknown): [ContentfulStatusCode, string, Record<string, string>?] {
  if (error instanceof HttpError) return [error.status, error.message, error.headers]
  // Hono's own refusals (a body over the limit is the one we let through) keep their status.
  if (error instanceof HTTPException) return [error.status as ContentfulStatusCode, error.message]
  if (error instanceof CohortError) {
    if (error.code === 'RUN_NOT_FOUND') return [404, error.message]
    if (error.code === 'INVALID_INPUT') return [400, error.message]
    if (error.code === 'SNAPSHOT_ERROR') return [422, error.message]
    // A request that came while the server stopped: another server will take it.
    if (error.code === 'SHUT_DOWN') return [503, error.message]
    // Another process runs it: try there, or once its claim has lapsed.
    if (error instanceof RunBusyError) {
      const seconds = Math.max(1, Math.ceil((error.until - Date.now()) / 1000))
      return [409, error.message, { 'retry-after': String(seconds) }]
    }
    return [500, error.message]
  }
  return [500, `internal error: ${(error as Error)?.message ?? String(error)}`]
}

type Target = 'json' | 'query' | 'param' | 'header' | 'cookie' | 'form'

/**
 * Turns a failed zod check of a request into a 400 that names the field: `invalid body: task: …`.
 * Query and path checks carry their own full messages (`limit must be …`), so they are used as they
 * are; one of zod's own is given the field's name.
 */
export function validationHook(
  result: { success: true } | { success: false; error: z.core.$ZodError; target: Target },
  _c: Context,
): undefined {
  if (result.success) return undefined
  const issue = result.error.issues[0]!
  const where = issue.path.length > 0 ? `${issue.path.join('.')}: ` : ''
  if (result.target === 'json') throw new HttpError(400, `invalid body: ${where}${issue.message}`)
  // zod's own messages ("expected string, received array" for `?limit=1&limit=2`) name no field.
  const named = issue.path.length === 0 || issue.message.includes(String(issue.path.at(-1)))
  throw new HttpError(400, named ? issue.message : `${where}${issue.message}`)
}
