import { parse as parseContentType } from 'content-type'
import type { MiddlewareHandler } from 'hono'
import { bodyLimit } from 'hono/body-limit'
import { HttpError } from './errors.js'

export const maxBodyBytes = 1_000_000

/** Refuses a body over the limit from its length alone, or once that much has streamed in. */
export const limitBody: MiddlewareHandler = bodyLimit({
  maxSize: maxBodyBytes,
  onError: () => {
    throw new HttpError(413, `body larger than ${maxBodyBytes} bytes; expected at most ${maxBodyBytes}`)
  },
})

/**
 * A body is JSON only when its media type, parsed, is `application/json`: `text/plain; application/json`
 * is the type a page on any site may send without asking (CORS-safelisted), so it must not pass.
 */
export const requireJson: MiddlewareHandler = async (c, next) => {
  const header = c.req.header('content-type')
  const expected = 'expected a JSON body (content-type: application/json)'
  const type = header === undefined ? undefined : parseType(header)
  if (type?.type !== 'application/json') {
    throw new HttpError(415, `${expected}, got "${header ?? 'none'}"`)
  }
  const charset = type.parameters.charset?.toLowerCase()
  if (charset !== undefined && charset !== 'utf-8') {
    throw new HttpError(415, `${expected} in UTF-8, got charset "${charset}"`)
  }
  try {
    // Hono keeps the text, so the route's validator reads it again without another read of the stream.
    await c.req.json()
  } catch (error) {
    throw new HttpError(400, `body is not JSON: ${(error as Error).message}`)
  }
  await next()
}

function parseType(header: string): ReturnType<typeof parseContentType> | undefined {
  try {
    return parseContentType(header)
  } catch {
    return undefined
  }
}
