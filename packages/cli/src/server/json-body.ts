import { parse as parseContentType } from 'content-type'
import type { MiddlewareHandler } from 'hono'
import { HttpError } from './errors.js'

export const maxBodyBytes = 1_000_000

/**
 * Refuses a body over the limit, from its length alone or once that much has streamed in. Unlike
 * Hono's bodyLimit, which answers the moment the limit is passed, the rest is first read and
 * dropped (up to a bound) and the connection then closed: answering while the client still sends
 * makes Node reset the connection under it, and a client such as fetch then sees a reset, not the 413.
 */
export const limitBody: MiddlewareHandler = async (c, next) => {
  const body = c.req.raw.body
  if (!body) return next()
  const reader = body.getReader()
  const declared = Number(c.req.header('content-length'))
  const chunks: Uint8Array[] = []
  let size = 0
  while (!(declared > maxBodyBytes)) {
    const { done, value } = await reader.read()
    if (done) {
      c.req.raw = new Request(c.req.raw, { body: Buffer.concat(chunks, size) })
      return next()
    }
    size += value.byteLength
    if (size > maxBodyBytes) break
    chunks.push(value)
  }
  for (let dropped = 0; dropped <= 16 * maxBodyBytes; ) {
    const { done, value } = await reader.read()
    if (done) break
    dropped += value.byteLength
  }
  await reader.cancel()
  throw new HttpError(413, `body larger than ${maxBodyBytes} bytes; expected at most ${maxBodyBytes}`, {
    connection: 'close',
  })
}

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
  let text: string
  try {
    text = strictUtf8.decode(await c.req.raw.arrayBuffer())
  } catch {
    throw new HttpError(400, 'body is not valid UTF-8; expected JSON in UTF-8')
  }
  try {
    JSON.parse(text)
  } catch (error) {
    throw new HttpError(400, `body is not JSON: ${(error as Error).message}`)
  }
  // The route's validator reads the body again, and checks the media type its own, stricter way
  // (no space before ";", no empty parameter): it is given the type checked here, spelled plainly.
  const headers = new Headers(c.req.raw.headers)
  headers.set('content-type', 'application/json')
  c.req.raw = new Request(c.req.raw, { body: text, headers })
  await next()
}

/** Bytes that are not UTF-8 are refused, not replaced with U+FFFD. */
const strictUtf8 = new TextDecoder('utf-8', { fatal: true })

function parseType(header: string): ReturnType<typeof parseContentType> | undefined {
  try {
    return parseContentType(header)
  } catch {
    return undefined
  }
}
