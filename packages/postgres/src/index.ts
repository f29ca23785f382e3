import {
  type AgentRecord,
  applyRetention,
  assertRunId,
  CohortError,
  checkRetention,
  checkRunFilter,
  hasBounds,
  InvalidInputError,
  type RunFilter,
  type RunRecord,
  type RunRetention,
  type StoredRun,
  StoreError,
} from '@cohort/core'
import type pg from 'pg'
import { createPool, describeTarget, passwordOf, redact } from './connection.js'
import { migrateSchema } from './migrations.js'
import { assertSchemaName, type PostgresStore, type PostgresStoreOptions, quoteIdent } from './options.js'
import {
  type AgentRow,
  agentFromRow,
  historySelect,
  type RecordRow,
  recordColumns,
  recordSelect,
  runFromRow,
} from './record-columns.js'
import { postgresClaims } from './run-claims.js'
import { listQuery, pruneRuns } from './run-queries.js'
import { saveAgentRows } from './save-agents.js'

export type { PostgresStore, PostgresStoreOptions } from './options.js'

/**
 * A `RunStore` on PostgreSQL: one row per run and one per agent, each holding its record as
 * jsonb (`record->>'status'` in psql; see `recordColumns`), beside the columns that listing
 * filters on. Given a connection string alone (`postgresStore(process.env.DATABASE_URL)`), it
 * makes its pool from it.
 */
export function postgresStore(given: PostgresStoreOptions | string = {}): PostgresStore {
  const options = storeOptions(given)
  const schema = options.schema ?? 'cohort'
  assertSchemaName(schema)
  const retention = checkRetention(options.retention)
  const ownsPool = options.pool === undefined
  const pool = options.pool ?? createPool(options)
  const target = describeTarget(options.connectionString, schema)
  const secret = passwordOf(options.connectionString)
  const q = quoteIdent(schema)
  let ready: Promise<void> | undefined
  let closed = false

  const fail = (action: string, error: unknown): Error => {
    if (error instanceof CohortError) return error
    const message = redact((error as Error)?.message ?? String(error), secret)
    return new StoreError(`postgres store (${target}): could not ${action}: ${message}`, { cause: error })
  }

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

  const prune = (kept: RunRetention) => pruneRuns(query, q, kept)
  const saveAgents = (runId: string, records: AgentRecord[], storedMessages: readonly number[] = []) =>
    saveAgentRows(query, q, runId, records, storedMessages)

  const runSource = (runId: string) => `postgres:${schema}.runs/${runId}`
  const agentSource = (runId: string, agentId: string) => `postgres:${schema}.agents/${runId}/${agentId}`

  return {
    migrate,
    async saveRun(record: RunRecord) {
      assertRunId(record.id)
      const columns = recordColumns(record)
      await query(
        `save run ${record.id}`,
        `INSERT INTO ${q}.runs (id, status, agent, created_at, updated_at, record, meta, record_text)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (id) DO UPDATE SET status = excluded.status, agent = excluded.agent,
           created_at = excluded.created_at, updated_at = excluded.updated_at, record = excluded.record,
           meta = excluded.meta, record_text = excluded.record_text`,
        [
          record.id,
          record.status,
          record.agent,
          Math.floor(record.createdAt),
          Math.floor(record.updatedAt),
          columns.record,
          columns.meta,
          columns.record_text,
        ],
      )
      if (record.status !== 'running' && hasBounds(retention))
        await applyRetention(() => prune(retention), `postgres store (${target})`)
    },
    async saveAgent(runId: string, record: AgentRecord, storedMessages = 0) {
      await saveAgents(runId, [record], [storedMessages])
    },
    saveAgents,
    async loadRun(runId: string) {
      assertRunId(runId)
      // One statement sees one snapshot: the run, its agents and their histories are read consistently.
      const rows = await query<AgentRow & { kind: 'run' | 'agent'; id: string }>(
        `load run ${runId}`,
        `SELECT 'run' AS kind, id, ${recordSelect}, NULL::text[] AS history FROM ${q}.runs WHERE id = $1
         UNION ALL
         SELECT 'agent' AS kind, a.id, ${recordSelect}, ${historySelect(q)} FROM ${q}.agents a WHERE a.run_id = $1
         ORDER BY kind DESC, id`,
        [runId],
      )
      const runRow = rows.find((row) => row.kind === 'run')
      if (!runRow) return undefined
      const agents = rows
        .filter((row) => row.kind === 'agent')
        .map((row) => agentFromRow(row, agentSource(runId, row.id)))
      return { run: runFromRow(runRow, runSource(runId)), agents } satisfies StoredRun
    },
    async loadAgent(runId: string, agentId: string) {
      assertRunId(runId)
      const rows = await query<AgentRow>(
        `load agent ${runId}/${agentId}`,
        `SELECT ${recordSelect}, ${historySelect(q)} FROM ${q}.agents a WHERE a.run_id = $1 AND a.id = $2`,
        [runId, agentId],
      )
      const row = rows[0]
      return row === undefined ? undefined : agentFromRow(row, agentSource(runId, agentId))
    },
    async loadRunRecord(runId: string) {
      assertRunId(runId)
      const rows = await query<RecordRow>(
        `load run record ${runId}`,
        `SELECT ${recordSelect} FROM ${q}.runs WHERE id = $1`,
        [runId],
      )
      const row = rows[0]
      return row === undefined ? undefined : runFromRow(row, runSource(runId))
    },
    async listRuns(filter: RunFilter = {}) {
      checkRunFilter(filter)
      const records: RunRecord[] = []
      // As in the file store: an unreadable run is left for `loadRun` to report; a listing skips
      // it, and reads on so that a page still holds `limit` runs when there are that many.
      for (let offset = filter.offset ?? 0; ; ) {
        const { sql, params } = listQuery(q, { ...filter, offset })
        const rows = await query<RecordRow & { id: string }>('list runs', sql, params)
        for (const row of rows) {
          try {
            records.push(runFromRow(row, runSource(row.id)))
          } catch {}
        }
        if (filter.limit === undefined || rows.length < filter.limit || records.length >= filter.limit) break
        offset += rows.length
      }
      return filter.limit === undefined ? records : records.slice(0, filter.limit)
    },
    async deleteRun(runId: string) {
      assertRunId(runId)
      await query(
        `delete run ${runId}`,
        `WITH agents_gone AS (DELETE FROM ${q}.agents WHERE run_id = $1),
           history_gone AS (DELETE FROM ${q}.agent_history WHERE run_id = $1),
           claims_gone AS (DELETE FROM ${q}.run_claims WHERE run_id = $1)
         DELETE FROM ${q}.runs WHERE id = $1`,
        [runId],
      )
    },
    ...postgresClaims(query, q, fail),
    async prune(kept?: RunRetention) {
      return prune(kept === undefined ? retention : checkRetention(kept))
    },
    async close() {
      if (closed) return
      closed = true
      await ready?.catch(() => {})
      if (ownsPool) await pool.end()
    },
  }
}

/** The options a call gave: a connection string stands for `{ connectionString }`. */
function storeOptions(given: unknown): PostgresStoreOptions {
  if (typeof given === 'string') {
    if (given.trim() === '')
      throw new InvalidInputError(
        'postgresStore: the connection string is empty; expected postgres://user@host:port/database',
      )
    return { connectionString: given }
  }
  if (given === null || typeof given !== 'object' || Array.isArray(given)) {
    throw new InvalidInputError(
      `postgresStore takes a connection string (postgres://…) or options ({ connectionString, schema, pool, … }); got ${given === null ? 'null' : Array.isArray(given) ? 'an array' : typeof given}`,
    )
  }
  return given as PostgresStoreOptions
}
