import { decodeAgentRecord, decodeRunRecord, StoreError } from '@cohort/core'
import type pg from 'pg'
import { recordColumns } from './record-columns.js'

/** A statement, or a step that needs code (converting rows). */
type MigrationStep = string | ((client: pg.PoolClient) => Promise<void>)

/** Each entry moves the schema up one version; never edit one that has shipped, add another. */
const migrations: ((q: string) => MigrationStep[])[] = [
  (q) => [
    `CREATE TABLE ${q}.runs (
       id text PRIMARY KEY,
       status text NOT NULL,
       agent text NOT NULL,
       created_at bigint NOT NULL,
       updated_at bigint NOT NULL,
       record text NOT NULL
     )`,
    `CREATE INDEX runs_status_created_at ON ${q}.runs (status, created_at DESC)`,
    `CREATE INDEX runs_created_at ON ${q}.runs (created_at DESC)`,
    `CREATE TABLE ${q}.agents (
       run_id text NOT NULL,
       id text NOT NULL,
       updated_at bigint NOT NULL,
       record text NOT NULL,
       PRIMARY KEY (run_id, id)
     )`,
    `CREATE INDEX agents_run_id ON ${q}.agents (run_id)`,
  ],
  // Records as jsonb (see `recordColumns`), converted in place; the text stays only for a record
  // jsonb cannot hold exactly, or one that does not decode (which `loadRun` goes on reporting).
  (q) => [
    ...['runs', 'agents'].flatMap((table) => [
      `ALTER TABLE ${q}.${table} RENAME COLUMN record TO record_text`,
      `ALTER TABLE ${q}.${table} ALTER COLUMN record_text DROP NOT NULL`,
      `ALTER TABLE ${q}.${table} ADD COLUMN record jsonb, ADD COLUMN meta jsonb`,
    ]),
    (client) => convertRows(client, `${q}.runs`, ['id'], decodeRunRecord),
    (client) => convertRows(client, `${q}.agents`, ['run_id', 'id'], decodeAgentRecord),
    // "Which agents failed in the last hour": WHERE record->>'status' = 'failed' AND updated_at > …
    `CREATE INDEX agents_status_updated_at ON ${q}.agents ((record->>'status'), updated_at DESC)`,
  ],
  // Retention walks the finished runs from the newest (`prune`).
  (q) => [
    `CREATE INDEX runs_finished_updated_at ON ${q}.runs (updated_at DESC, id COLLATE "C" DESC)
       WHERE status <> 'running'`,
  ],
  // The start of a long agent history beside the agent's row, in chunks written once (see
  // `encodeAgentRecordParts`). Rows written before keep their whole history in the record.
  (q) => [
    `CREATE TABLE ${q}.agent_history (
       run_id text NOT NULL,
       agent_id text NOT NULL,
       chunk integer NOT NULL,
       messages text NOT NULL,
       PRIMARY KEY (run_id, agent_id, chunk)
     )`,
  ],
  // Which process runs a run, until when (`claimRun`).
  (q) => [
    `CREATE TABLE ${q}.run_claims (
       run_id text PRIMARY KEY,
       owner text NOT NULL,
       until bigint NOT NULL
     )`,
  ],
]

const batchSize = 500

/** Rewrites every row's codec text as `recordColumns`, a batch at a time, in key order. */
async function convertRows(
  client: pg.PoolClient,
  table: string,
  keys: string[],
  decode: typeof decodeRunRecord | typeof decodeAgentRecord,
): Promise<void> {
  const keyList = keys.join(', ')
  const after = `(${keyList}) > (${keys.map((_, i) => `$${i + 1}`).join(', ')})`
  let last: string[] | undefined
  for (;;) {
    const { rows } = await client.query<Record<string, string>>(
      `SELECT ${keyList}, record_text FROM ${table} ${last ? `WHERE ${after}` : ''}
       ORDER BY ${keyList} LIMIT ${batchSize}`,
      last ?? [],
    )
    if (rows.length === 0) return
    const converted = rows.flatMap((row) => {
      try {
        const source = `postgres:${table}/${keys.map((key) => row[key]).join('/')}`
        return [{ row, columns: recordColumns(decode(row.record_text!, source)) }]
      } catch {
        return []
      }
    })
    if (converted.length > 0) {
      const columns = ['record', 'meta', 'record_text'] as const
      const params = [
        ...keys.map((key) => converted.map(({ row }) => row[key])),
        ...columns.map((column) => converted.map(({ columns }) => columns[column])),
      ]
      const names = [...keys, ...columns.map((column) => `new_${column}`)]
      await client.query(
        `UPDATE ${table} AS t SET record = v.new_record::jsonb, meta = v.new_meta::jsonb, record_text = v.new_record_text
         FROM unnest(${names.map((_, i) => `$${i + 1}::text[]`).join(', ')}) AS v(${names.join(', ')})
         WHERE ${keys.map((key) => `t.${key} = v.${key}`).join(' AND ')}`,
        params,
      )
    }
    const end = rows[rows.length - 1]!
    last = keys.map((key) => end[key]!)
  }
}

/** Arbitrary first key of the advisory lock, so the store's locks do not meet an application's. */
const lockNamespace = 0x636f68 // 'coh'

/** Brings `schema` up to the newest version, in one transaction; stores starting together take turns. */
export async function migrateSchema(pool: pg.Pool, schema: string, q: string): Promise<void> {
  const client = await pool.connect()
  let broken: Error | undefined
  try {
    await client.query('BEGIN')
    await client.query('SELECT pg_advisory_xact_lock($1::int, $2::int)', [lockNamespace, hash32(schema)])
    await client.query(`CREATE SCHEMA IF NOT EXISTS ${q}`)
    await client.query(
      `CREATE TABLE IF NOT EXISTS ${q}.schema_migrations (
         version integer PRIMARY KEY,
         applied_at timestamptz NOT NULL DEFAULT now()
       )`,
    )
    const { rows } = await client.query<{ version: number | null }>(
      `SELECT max(version) AS version FROM ${q}.schema_migrations`,
    )
    const current = rows[0]?.version ?? 0
    if (current > migrations.length) {
      throw new StoreError(
        `schema "${schema}" is at version ${current}; this version of @cohort/postgres knows up to ${migrations.length}`,
      )
    }
    for (const [index, steps] of migrations.entries()) {
      const version = index + 1
      if (version <= current) continue
      for (const step of steps(q)) {
        if (typeof step === 'string') await client.query(step)
        else await step(client)
      }
      await client.query(`INSERT INTO ${q}.schema_migrations (version) VALUES ($1)`, [version])
    }
    await client.query('COMMIT')
  } catch (error) {
    await client.query('ROLLBACK').catch((rollbackError: Error) => {
      broken = rollbackError
    })
    throw error
  } finally {
    // A client whose rollback failed is in an unknown state: the pool discards it.
    client.release(broken)
  }
}

/** The newest schema version this package knows. */
export const schemaVersion = migrations.length

/** FNV-1a, as a signed 32-bit integer for `pg_advisory_xact_lock(int, int)`. */
function hash32(text: string): number {
  let hash = 0x811c9dc5
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i)
    hash = Math.imul(hash, 0x01000193)
  }
  return hash | 0
}
