import {
  type AgentRecord,
  applyRetention,
  assertRunId,
  CohortError,
  checkRetention,
  checkRunFilter,
  hasBounds,
  InvalidInputError,
  noClaim,
  type RunFilter,
  type RunId,
  type RunRecord,
  type RunRetention,
  type RunStore,
  type StoredRun,
  StoreError,
} from '@cohort/core'
import pg from 'pg'
import { migrateSchema } from './migrations.js'
import {
  type AgentRow,
  agentColumns,
  agentFromRow,
  historySelect,
  type RecordRow,
  recordColumns,
  recordSelect,
  runFromRow,
} from './record-columns.js'

export interface PostgresStoreOptions {
  /** Used when no `pool` is given; without either, pg reads the usual `PG*` environment variables. */
  connectionString?: string
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

/** A `RunStore` whose optional reads, `deleteRun` and `prune` are always there. */
export type PostgresStore = RunStore &
  Required<Pick<RunStore, 'loadAgent' | 'loadRunRecord' | 'deleteRun' | 'prune'>> & {
    /** Creates or upgrades the schema now; otherwise it happens on first use. */
    migrate(): Promise<void>
    /** Ends the pool the store created; a pool passed in is left open. */
    close(): Promise<void>
  }

const schemaPattern = /^[a-z_][a-z0-9_]{0,62}$/

/**
 * A `RunStore` on PostgreSQL: one row per run and one per agent, each holding its record as
 * jsonb (`record->>'status'` in psql; see `recordColumns`), beside the columns that listing
 * filters on.
 */
export function postgresStore(options: PostgresStoreOptions = {}): PostgresStore {
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

  /** One statement: the finished runs `kept` does not keep, and their agents (as `runsToPrune` chooses). */
  const prune = async (kept: RunRetention): Promise<RunId[]> => {
    const max = kept.maxFinishedRuns
    const rows = await query<{ id: string }>(
      'prune runs',
      `WITH gone AS (
         SELECT id FROM (
           SELECT id, updated_at,
             row_number() OVER (ORDER BY updated_at DESC, id COLLATE "C" DESC) AS newer
           FROM ${q}.runs WHERE status <> 'running'
         ) finished
         WHERE newer > $1::bigint OR updated_at < $2::numeric
       ), agents_gone AS (
         DELETE FROM ${q}.agents WHERE run_id IN (SELECT id FROM gone)
       ), history_gone AS (
         DELETE FROM ${q}.agent_history WHERE run_id IN (SELECT id FROM gone)
       ), claims_gone AS (
         DELETE FROM ${q}.run_claims WHERE run_id IN (SELECT id FROM gone)
       ), runs_gone AS (
         DELETE FROM ${q}.runs WHERE id IN (SELECT id FROM gone) RETURNING id, updated_at
       )
       SELECT id FROM runs_gone ORDER BY updated_at, id COLLATE "C"`,
      // A bound that is not there is NULL, which no row passes.
      [
        max === undefined || max === Number.POSITIVE_INFINITY ? null : max,
        kept.maxAgeMs === undefined ? null : Date.now() - kept.maxAgeMs,
      ],
    )
    return rows.map((row) => row.id)
  }

  /**
   * The agents' rows and their new messages in one statement, so one implicit transaction: the
   * batch is stored whole or not at all. The rows go as one jsonb document whose records are
   * their own JSON, joined as they are: as text arrays, every quote of 1,000 records was escaped
   * by the client and parsed twice by the server (a batch took 3 times as long). The rare exact
   * text (`record_text`) goes beside it: jsonb cannot hold what it is kept for. The chunks of
   * long histories are rare (one every `historyChunkSize` messages of an agent) and go as text arrays.
   */
  const saveAgents = async (
    runId: string,
    records: AgentRecord[],
    storedMessages: readonly number[] = [],
  ) => {
    assertRunId(runId)
    // One statement may not change a row twice: an agent's last record wins, appending to what
    // its first one's write found stored.
    const latest = new Map<string, { record: AgentRecord; from: number }>()
    records.forEach((record, i) => {
      const from = Math.min(storedMessages[i] ?? 0, latest.get(record.id)?.from ?? Number.POSITIVE_INFINITY)
      latest.set(record.id, { record, from })
    })
    if (latest.size === 0) return
    const texts: string[] = []
    const chunkAgents: string[] = []
    const chunkIndexes: number[] = []
    const chunkTexts: string[] = []
    const rows: string[] = []
    for (const { record, from } of latest.values()) {
      const columns = agentColumns(record, from)
      if (columns.record_text !== null) texts.push(columns.record_text)
      rows.push(
        `{"id":${JSON.stringify(record.id)},"updated_at":${Math.floor(record.updatedAt)},"record":${columns.record},"meta":${columns.meta ?? 'null'},"text":${columns.record_text === null ? 'null' : texts.length}}`,
      )
      for (const chunk of columns.chunks) {
        chunkAgents.push(record.id)
        chunkIndexes.push(chunk.index)
        chunkTexts.push(chunk.json)
      }
    }
    // A record stored as completed or failed is final: a write from a process that lost the agent
    // (a stalled worker whose job was given to another) changes neither it nor its history.
    const upsert = `INSERT INTO ${q}.agents (run_id, id, updated_at, record, meta, record_text)
      SELECT $1, row.id, row.updated_at, row.record, row.meta, ($3::text[])[row.text]
      FROM jsonb_to_recordset($2::jsonb) AS row(id text, updated_at bigint, record jsonb, meta jsonb, text int)
      ON CONFLICT (run_id, id) DO UPDATE SET updated_at = excluded.updated_at, record = excluded.record,
        meta = excluded.meta, record_text = excluded.record_text
      WHERE coalesce(${q}.agents.record->>'status', '') NOT IN ('completed', 'failed')
      RETURNING id`
    const document = `[${rows.join(',')}]`
    if (chunkAgents.length === 0) {
      await query(`save ${latest.size} agents of ${runId}`, upsert, [runId, document, texts])
      return
    }
    await query(
      `save ${latest.size} agents of ${runId}`,
      `WITH saved AS (${upsert})
       INSERT INTO ${q}.agent_history (run_id, agent_id, chunk, messages)
       SELECT $1, h.agent_id, h.chunk, h.messages FROM unnest($4::text[], $5::int[], $6::text[]) AS h(agent_id, chunk, messages)
       WHERE h.agent_id IN (SELECT id FROM saved)
       ON CONFLICT (run_id, agent_id, chunk) DO UPDATE SET messages = excluded.messages`,
      [runId, document, texts, chunkAgents, chunkIndexes, chunkTexts],
    )
  }

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
    async claimRun(runId, request) {
      assertRunId(runId)
      // Taken in one statement when it may be. When not, the claim that holds is read by a
      // statement of its own: the first one's snapshot may predate the claim that beat it.
      for (let attempt = 1; ; attempt++) {
        const taken = await query<{ owner: string; until: string }>(
          `claim run ${runId}`,
          // A renewal only moves the end of a claim the owner still holds; it makes none.
          request.renewing
            ? `UPDATE ${q}.run_claims SET until = $3 WHERE run_id = $1 AND owner = $2 RETURNING owner, until`
            : `INSERT INTO ${q}.run_claims AS c (run_id, owner, until) VALUES ($1, $2, $3)
               ON CONFLICT (run_id) DO UPDATE SET owner = excluded.owner, until = excluded.until
                 WHERE c.owner = excluded.owner OR c.until < $4 OR c.owner = $5
               RETURNING owner, until`,
          request.renewing
            ? [runId, request.owner, request.until]
            : [runId, request.owner, request.until, Date.now(), request.replacing ?? null],
        )
        const held =
          taken[0] ??
          (
            await query<{ owner: string; until: string }>(
              `read the claim on run ${runId}`,
              `SELECT owner, until FROM ${q}.run_claims WHERE run_id = $1`,
              [runId],
            )
          )[0]
        if (held) return { owner: held.owner, until: Number(held.until) }
        if (request.renewing) return noClaim
        // Let go of between the two: try again.
        if (attempt === 5) throw fail(`claim run ${runId}`, new Error('the claim kept changing under it'))
      }
    },
    async releaseRun(runId, owner) {
      assertRunId(runId)
      await query(`release run ${runId}`, `DELETE FROM ${q}.run_claims WHERE run_id = $1 AND owner = $2`, [
        runId,
        owner,
      ])
    },
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

function createPool(options: PostgresStoreOptions): pg.Pool {
  const pool = new pg.Pool({
    ...(options.connectionString === undefined ? {} : { connectionString: options.connectionString }),
    max: options.max ?? 10,
    connectionTimeoutMillis: options.connectionTimeoutMillis ?? 10_000,
  })
  // An idle client losing its connection would otherwise crash the process; the next query reports it.
  pool.on('error', () => {})
  return pool
}

function assertSchemaName(schema: string): void {
  if (!schemaPattern.test(schema) || schema.startsWith('pg_')) {
    throw new InvalidInputError(
      `invalid schema name ${JSON.stringify(String(schema).slice(0, 80))}: expected 1-63 lower-case letters, digits or "_", not starting with a digit or "pg_"`,
    )
  }
}

function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`
}

function listQuery(q: string, filter: RunFilter): { sql: string; params: unknown[] } {
  const where: string[] = []
  const params: unknown[] = []
  const param = (value: unknown) => {
    params.push(value)
    return `$${params.length}`
  }
  if (filter.status !== undefined) where.push(`status = ANY(${param([filter.status].flat())}::text[])`)
  // Compared as numeric so a fractional bound filters exactly as `filterRuns` does.
  if (filter.since !== undefined) where.push(`created_at >= ${param(filter.since)}::numeric`)
  if (filter.until !== undefined) where.push(`created_at < ${param(filter.until)}::numeric`)
  // Ties are broken by id in code-unit order, as `filterRuns` does, whatever the database's collation.
  let sql = `SELECT id, ${recordSelect} FROM ${q}.runs${where.length > 0 ? ` WHERE ${where.join(' AND ')}` : ''}
    ORDER BY created_at DESC, id COLLATE "C"`
  if (filter.limit !== undefined) sql += ` LIMIT ${param(filter.limit)}`
  if (filter.offset !== undefined) sql += ` OFFSET ${param(filter.offset)}`
  return { sql, params }
}

/** Where the store points, for error messages: never the password. */
function describeTarget(connectionString: string | undefined, schema: string): string {
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

function passwordOf(connectionString: string | undefined): string | undefined {
  if (connectionString === undefined) return undefined
  try {
    const password = decodeURIComponent(new URL(connectionString).password)
    return password === '' ? undefined : password
  } catch {
    return undefined
  }
}

/** Takes any password out of a driver message: one from a URL, and the store's own. */
function redact(message: string, secret: string | undefined): string {
  const stripped = message.replace(/(\b[a-z][a-z0-9+.-]*:\/\/[^:/@\s]*:)[^@\s]*@/gi, '$1***@')
  return secret ? stripped.split(secret).join('***') : stripped
}
