import pg from 'pg'
import type { PostgresStoreOptions } from './options.js'

/** One statement on the store's pool, its rows returned; `action` names it in an error. */
export type Query = <R extends pg.QueryResultRow>(
  action: string,
  sql: string,
  params: unknown[],
) => Promise<R[]>

export function createPool(options: PostgresStoreOptions): pg.Pool {
  const pool = new pg.Pool({
    ...(options.connectionString === undefined ? {} : { connectionString: options.connectionString }),
    max: options.max ?? 10,
    connectionTimeoutMillis: options.connectionTimeoutMillis ?? 10_000,
  })
  // An idle client losing its connection would otherwise crash the process; the next query reports it.
  pool.on('error', () => {})
  return pool
}

/** Where the store points, for error messages: never the password. */
export function describeTarget(connectionString: string | undefined, schema: string): string {
  const where = `schema "${schema}"`
  if (connectionString === undefined) return where
  try {
    const url = new URL(connectionString)
    const user = url.username ? `${decodeURIComponent(url.username)}@` : ''
    return `${user}${url.host}${url.pathname}, ${where}`
  } catch {
    return where
  }
}

export function passwordOf(connectionString: string | undefined): string | undefined {
  if (connectionString === undefined) return undefined
  try {
    const password = decodeURIComponent(new URL(connectionString).password)
    return password === '' ? undefined : password
  } catch {
    return undefined
  }
}

/** Takes any password out of a driver message: one from a URL, and the store's own. */
export function redact(message: string, secret: string | undefined): string {
  const stripped = message.replace(/(\b[a-z][a-z0-9+.-]*:\/\/[^:/@\s]*:)[^@\s]*@/gi, '$1***@')
  return secret ? stripped.split(secret).join('***') : stripped
}
