import { InvalidInputError, type KeepingStore, type RunRetention } from '@cohort/core'
import type pg from 'pg'

export interface PostgresStoreOptions {
  /** Used when no `pool` is given; without either, pg reads the usual `PG*` environment variables. */
  connectionString?: string | undefined
  /** Schema holding the tables; created on first use. Default `cohort`. */
  schema?: string
  /** A pool you own: the store uses it and `close()` leaves it open. */
  pool?: pg.Pool
  /** Size of the pool the store creates. Default 10. */
  max?: number
  /** How long to wait for a connection, in ms, on the pool the store creates. Default 10 000. */
  connectionTimeoutMillis?: number
  /** Which finished runs to keep (default: every one); applied each time a run finishes. */
  retention?: RunRetention
}

/** A `RunStore` whose optional reads, `deleteRun`, `prune` and claims are always there, as fileStore's and redisStore's. */
export type PostgresStore = KeepingStore & {
  /** Creates or upgrades the schema now; otherwise it happens on first use. */
  migrate(): Promise<void>
  /** Ends the pool the store created; a pool passed in is left open. */
  close(): Promise<void>
}

const schemaPattern = /^[a-z_][a-z0-9_]{0,62}$/

export function assertSchemaName(schema: string): void {
  if (!schemaPattern.test(schema) || schema.startsWith('pg_')) {
    throw new InvalidInputError(
      `invalid schema name ${JSON.stringify(String(schema).slice(0, 80))}: expected 1-63 lower-case letters, digits or "_", not starting with a digit or "pg_"`,
    )
  }
}

export function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`
}
