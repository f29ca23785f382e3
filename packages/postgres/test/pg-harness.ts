// PostgreSQL plumbing for the tests: reachability (skipped loudly without it, failing under CI),
// fresh schemas, and an admin pool that reads and changes the tables as a user in psql would.
import { randomBytes } from 'node:crypto'
import pg from 'pg'
import { afterAll } from 'vitest'

export const connectionString = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
const inCi = process.env.CI === 'true'

async function probe(): Promise<string | undefined> {
  const client = new pg.Client({ connectionString, connectionTimeoutMillis: 2_000 })
  try {
    await client.connect()
    await client.query('SELECT 1')
    return undefined
  } catch (error) {
    return (error as Error).message || String(error)
  } finally {
    await client.end().catch(() => {})
  }
}

export const unreachable = await probe()
// On CI a missing database is a failure, so the tests run (and fail) rather than skip.
export const enabled = unreachable === undefined || inCi
if (!enabled) {
  console.warn(
    `\n!!! @cohort/postgres tests SKIPPED: PostgreSQL is not reachable at ${redacted(connectionString)} (${unreachable}).\n` +
      '!!! Start PostgreSQL or set DATABASE_URL to run them; with CI=true they fail instead.\n',
  )
}

export function redacted(url: string): string {
  return url.replace(/(:\/\/[^:/@]*:)[^@]*@/, '$1***@')
}

export function freshSchema(): string {
  return `cohort_test_${randomBytes(8).toString('hex')}`
}

export const admin = enabled
  ? new pg.Pool({ connectionString, max: 2, connectionTimeoutMillis: 2_000 })
  : undefined
admin?.on('error', () => {})
afterAll(async () => {
  await admin?.end()
})

export async function dropSchema(schema: string): Promise<void> {
  await admin!.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`)
}
