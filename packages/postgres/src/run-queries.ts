import { assertRunId, type RunFilter, type RunId, type RunRecord, type RunRetention } from '@cohort/core'
import type { Query } from './connection.js'
import { recordColumns, recordSelect } from './record-columns.js'

/** A run's row written, made or replaced. */
export async function saveRunRow(query: Query, q: string, record: RunRecord): Promise<void> {
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
}

/** One statement: a run's row, its agents, their histories and its claim deleted. */
export async function deleteRunRows(query: Query, q: string, runId: string): Promise<void> {
  assertRunId(runId)
  await query(
    `delete run ${runId}`,
    `WITH agents_gone AS (DELETE FROM ${q}.agents WHERE run_id = $1),
       history_gone AS (DELETE FROM ${q}.agent_history WHERE run_id = $1),
       claims_gone AS (DELETE FROM ${q}.run_claims WHERE run_id = $1)
     DELETE FROM ${q}.runs WHERE id = $1`,
    [runId],
  )
}

/** One statement: the finished runs `kept` does not keep, and their agents (as `runsToPrune` chooses). */
export async function pruneRuns(query: Query, q: string, kept: RunRetention): Promise<RunId[]> {
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

export function listQuery(q: string, filter: RunFilter): { sql: string; params: unknown[] } {
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
