import { CohortError, StoreError } from '@cohort/core'
import type pg from 'pg'
import { createPool, describeTarget, passwordOf, type Query, redact } from './connection.js'
import { migrateSchema } from './migrations.js'
import { type PostgresStoreOptions, quoteIdent } from './options.js'

/** The store's pool and schema: its statements run once the schema is migrated, their failures told. */
export interface StoreConnection {
  /** The schema quoted, as the SQL names it. */
  readonly q: string
  /** Where the store points, for messages: never the password. */
  readonly target: string
  /** A failure as a `StoreError` naming the target and `action`, any password taken out. */
  readonly fail: (action: string, error: unknown) => Error
  /** Creates or upgrades the schema, once; a failed attempt is made again by the next call. */
  readonly migrate: () => Promise<void>
  readonly query: Query
  /** Ends the pool it created; a pool passed in is left open. */
  readonly close: () => Promise<void>
}

/** The pool given or made from `options`, on `schema` (already checked). */
export function storeConnection(options: PostgresStoreOptions, schema: string): StoreConnection {
  const ownsPool = options.pool === undefined
  const pool = options.pool ?? createPool(options)
  const target = describeTarget(options.connectionString, schema)
  const fail = storeFailure(target, passwordOf(options.connectionString))
  const q = quoteIdent(schema)
  let ready: Promise<void> | undefined
  let closed = false

  const migrate = (): Promise<void> => {
    if (closed) return Promise.reject(new StoreError(`postgres store (${target}) is closed`))
    ready ??= migrateSchema(pool, schema, q).catch((error) => {
      // A failed migration (database down, say) is tried again by the next call.
      ready = undefined
      throw fail('migrate the schema', error)
    })
    return ready
  }

  const query = async <R extends pg.QueryResultRow>(
    action: string,
    sql: string,
    params: unknown[],
  ): Promise<R[]> => {
    await migrate()
    try {
      return (await pool.query<R>(sql, params)).rows
    } catch (error) {
      throw fail(action, error)
    }
  }

  const close = async () => {
    if (closed) return
    closed = true
    await ready?.catch(() => {})
    if (ownsPool) await pool.end()
  }
  return { q, target, fail, migrate, query, close }
}

/** What `fail` is: a `CohortError` as it is, anything else a `StoreError` naming the target. */
function storeFailure(target: string, secret: string | undefined): StoreConnection['fail'] {
  return (action: string, error: unknown): Error => {
    if (error instanceof CohortError) return error
    const message = redact((error as Error)?.message ?? String(error), secret)
    return new StoreError(`postgres store (${target}): could not ${action}: ${message}`, { cause: error })
  }
}
