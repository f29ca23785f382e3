import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'
import { networkInterfaces } from 'node:os'
import { InvalidInputError } from '@cohort/core'
import type { Context, MiddlewareHandler } from 'hono'
import { deleteCookie, getCookie, setCookie } from 'hono/cookie'
import { HttpError } from './errors.js'

/**
 * Who may talk to the server. Any web page the user opens can reach 127.0.0.1, so listening there
 * protects nothing: a request must name the server by a host it answers as (against DNS rebinding),
 * come from no page or from its own pages (against other sites), and carry the token.
 */
export interface Access {
  /** Refuses a request or WebSocket upgrade that fails the Host, Origin or token check. */
  check: MiddlewareHandler
  /** The Host and Origin checks alone: for the inspector's page, which holds no data. */
  checkCaller: MiddlewareHandler
  /**
   * Signs a browser in from `?token=` (a cookie); true when the address had a token, right or
   * wrong (a wrong one, an old link after a restart, sets nothing: the page then asks to sign in).
   */
  signIn(c: Context): boolean
  /** The origins whose pages may call the API (the server's own, then the allowed ones). */
  origins: string[]
}

export interface AccessOptions {
  /** null: no token is asked for (the caller chose so, explicitly). */
  token: string | null
  port: number
  /** The address the server listens on. */
  host: string
  allowHosts: readonly string[]
  allowOrigins: readonly string[]
}

export function createToken(): string {
  return randomBytes(32).toString('base64url')
}

/** A token given by a person must be hard to guess and fit in a header and a URL unchanged. */
export function checkToken(token: string): string {
  if (!/^[A-Za-z0-9._~+/=-]{16,512}$/.test(token)) {
    throw new InvalidInputError(
      'the token must be 16 to 512 characters of letters, digits and ._~+/=- (e.g. `openssl rand -hex 32`)',
    )
  }
  return token
}

/** `https://ops.example.com` as the browser sends it in `Origin`. */
export function checkOrigin(origin: string): string {
  let parsed: URL | undefined
  try {
    parsed = new URL(origin)
  } catch {}
  if (!parsed || !/^https?:$/.test(parsed.protocol) || parsed.origin !== origin.replace(/\/$/, '')) {
    throw new InvalidInputError(
      `"${origin}" is not an origin; expected scheme://host[:port], e.g. https://ops.example.com`,
    )
  }
  return parsed.origin
}

/** A host name or address as it appears in `Host` without its port: `cohort.example.com`, `[::1]`. */
export function checkHostName(name: string): string {
  const bracketed = name.includes(':') && !name.startsWith('[') ? `[${name}]` : name
  if (!hostPattern.test(bracketed) || bracketed.includes(']:')) {
    throw new InvalidInputError(`"${name}" is not a host name; expected e.g. cohort.example.com or 10.0.0.5`)
  }
  return bracketed.toLowerCase()
}

const hostPattern = /^(\[[0-9a-f:.]+\]|[a-z0-9.-]+)$/i
const hostHeaderPattern = /^(\[[0-9a-f:.]+\]|[a-z0-9.-]+)(:\d{1,5})?$/i

export function createAccess(options: AccessOptions): Access {
  const hosts = new Set(['localhost', '127.0.0.1', '[::1]', ...options.allowHosts.map(checkHostName)])
  if (isWildcard(options.host)) for (const address of interfaceAddresses()) hosts.add(address)
  else hosts.add(checkHostName(options.host))
  const own = [...hosts].map((name) => `http://${name}:${options.port}`)
  const origins = [...new Set([...own, ...options.allowOrigins.map(checkOrigin)])]
  const expected = options.token === null ? null : digest(options.token)
  // Cookies are not kept apart by port: each server's has a name of its own.
  const cookieName = `cohort_token_${options.port}`
  /** Set by a sign-in link whose token is not this server's (an earlier start's). */
  const staleLinkCookie = `${cookieName}_stale`

  const refuseHost = (host: string) =>
    new HttpError(
      403,
      `Host "${host}" is not a name this server answers as; expected one of ${[...hosts].join(', ')} (add one with --allow-host / allowHosts)`,
    )
  /** `host` as Host gives it (`name[:port]`) is a name this server answers as. */
  const answersAs = (host: string) => {
    const name = hostHeaderPattern.exec(host)?.[1]?.toLowerCase()
    return name !== undefined && hosts.has(name)
  }
  const checkCaller: MiddlewareHandler = async (c, next) => {
    const host = c.req.header('host') ?? ''
    if (!answersAs(host)) throw refuseHost(host)
    // A request in absolute form (`GET http://evil.example/… HTTP/1.1`) names its host in its
    // target, which wins over Host: it must be one of ours too.
    const target = c.env?.incoming?.url
    if (typeof target === 'string' && !target.startsWith('/')) {
      const named = URL.canParse(target) ? new URL(target).host : target
      if (!answersAs(named)) throw refuseHost(named)
    }
    const origin = c.req.header('origin')
    if (origin !== undefined && !origins.includes(origin)) {
      throw new HttpError(
        403,
        `requests from pages at ${origin} are refused; expected no Origin or one of ${origins.join(', ')} (add one with --allow-origin / allowOrigins)`,
      )
    }
    await next()
  }

  const check: MiddlewareHandler = async (c, next) => {
    if (expected !== null) {
      const header = c.req.header('authorization')
      const bearer = header === undefined ? undefined : /^Bearer +(\S+) *$/i.exec(header)?.[1]
      const given = bearer ?? getCookie(c, cookieName)
      if (given === undefined || !timingSafeEqual(digest(given), expected)) {
        throw new HttpError(
          401,
          given === undefined
            ? getCookie(c, staleLinkCookie) !== undefined
              ? "the link this browser opened holds another token than this server's (it changes at each start unless given with --token): open the inspector URL `cohort serve` printed"
              : 'missing token: send "Authorization: Bearer <token>" with the token `cohort serve` printed, or open the inspector URL it printed'
            : header !== undefined
              ? 'wrong token: expected the one `cohort serve` printed (it changes at each start unless given with --token)'
              : 'this browser signed in to an earlier start of the server: open the inspector URL `cohort serve` printed',
          { 'www-authenticate': 'Bearer realm="cohort"' },
        )
      }
    }
    await next()
  }

  return {
    check,
    checkCaller,
    origins,
    signIn(c) {
      const given = c.req.query('token')
      if (given === undefined || expected === null) return false
      // HttpOnly: no script reads them; SameSite=Strict: no other site's request carries them.
      const cookie = { httpOnly: true, sameSite: 'Strict', path: '/' } as const
      if (!timingSafeEqual(digest(given), expected)) {
        // Noted, so that the page's requests are told the link was stale, not that no token came.
        setCookie(c, staleLinkCookie, '1', cookie)
        return true
      }
      setCookie(c, cookieName, given, cookie)
      if (getCookie(c, staleLinkCookie) !== undefined) deleteCookie(c, staleLinkCookie, { path: '/' })
      return true
    },
  }
}

/** Hashing first gives equal lengths, so the comparison takes the same time whatever is sent. */
function digest(token: string): Buffer {
  return createHash('sha256').update(token).digest()
}

export function isWildcard(host: string): boolean {
  return host === '0.0.0.0' || host === '::' || host === '[::]'
}

/** Listening on every interface, the server answers as each of their addresses. */
function interfaceAddresses(): string[] {
  return Object.values(networkInterfaces())
    .flatMap((list) => list ?? [])
    .map((entry) => (entry.family === 'IPv6' ? `[${entry.address.replace(/%.*$/, '')}]` : entry.address))
}
