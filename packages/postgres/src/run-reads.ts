import {
  assertRunId,
  checkRunFilter,
  type RunFilter,
  type RunRecord,
  type RunStore,
  SnapshotError,
  type StoredRun,
} from '@cohort/core'
import type { Query } from './connection.js'
import {
  type AgentRow,
  agentFromRow,
  historySelect,
  type RecordRow,
  recordSelect,
  runFromRow,
} from './record-columns.js'
import { listQuery } from './run-queries.js'

/** The store's reads: a run whole, one agent, a run's record, a listing. */
export function postgresReads(
  query: Query,
  q: string,
  schema: string,
): Required<Pick<RunStore, 'loadRun' | 'loadAgent' | 'loadRunRecord' | 'listRuns'>> {
  return {
    loadRun(runId: string) {
      return loadWholeRun(query, q, schema, runId)
    },
    async loadAgent(runId: string, agentId: string) {
      assertRunId(runId)
      const rows = await query<AgentRow>(
        `load agent ${runId}/${agentId}`,
        `SELECT ${recordSelect}, ${historySelect(q)} FROM ${q}.agents a WHERE a.run_id = $1 AND a.id = $2`,
        [runId, agentId],
      )
      const row = rows[0]
      return row === undefined
        ? undefined
        : agentFromRow(row, agentSource(schema, runId, agentId), runId, agentId)
    },
    async loadRunRecord(runId: string) {
      assertRunId(runId)
      const rows = await query<RecordRow>(
        `load run record ${runId}`,
        `SELECT ${recordSelect} FROM ${q}.runs WHERE id = $1`,
        [runId],
      )
      const row = rows[0]
      if (row !== undefined) return runFromRow(row, runSource(schema, runId), runId)
      const agents = await query(
        `look for agents of run ${runId}`,
        `SELECT 1 FROM ${q}.agents WHERE run_id = $1 LIMIT 1`,
        [runId],
      )
      if (agents.length > 0) throw recordMissing(schema, runId)
      return undefined
    },
    listRuns(filter: RunFilter = {}) {
      return listRunRecords(query, q, schema, filter)
    },
  }
}

/** Where a record was read, as a decoding error names it. */
const runSource = (schema: string, runId: string) => `postgres:${schema}.runs/${runId}`
const agentSource = (schema: string, runId: string, agentId: string) =>
  `postgres:${schema}.agents/${runId}/${agentId}`

/**
 * A run whose row is gone (deleted by hand) while its agents' rows are there: read as no run,
 * its id would be taken by a new run written over and among the old agents.
 */
function recordMissing(schema: string, runId: string): SnapshotError {
  return new SnapshotError(
    runSource(schema, runId),
    `the run record is missing, and the store holds its agents' records; restore its row, or remove the run (deleteRun) to free the id`,
  )
}

/** `loadRun`: the run, its agents and their histories. */
async function loadWholeRun(
  query: Query,
  q: string,
  schema: string,
  runId: string,
): Promise<StoredRun | undefined> {
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
  if (!runRow) {
    if (rows.length > 0) throw recordMissing(schema, runId)
    return undefined
  }
  const agents = rows
    .filter((row) => row.kind === 'agent')
    .map((row) => agentFromRow(row, agentSource(schema, runId, row.id), runId, row.id))
  return { run: runFromRow(runRow, runSource(schema, runId), runId), agents } satisfies StoredRun
}

/** `listRuns`: the records of the runs `filter` picks, a page at a time. */
async function listRunRecords(
  query: Query,
  q: string,
  schema: string,
  filter: RunFilter,
): Promise<RunRecord[]> {
  checkRunFilter(filter)
  const records: RunRecord[] = []
  // As in the file store: an unreadable run is left for `loadRun` to report; a listing skips
  // it, and reads on so that a page still holds `limit` runs when there are that many.
  for (let offset = filter.offset ?? 0; ; ) {
    const { sql, params } = listQuery(q, { ...filter, offset })
    const rows = await query<RecordRow & { id: string }>('list runs', sql, params)
    for (const row of rows) {
      try {
        records.push(runFromRow(row, runSource(schema, row.id), row.id))
      } catch {}
    }
    if (filter.limit === undefined || rows.length < filter.limit || records.length >= filter.limit) break
    offset += rows.length
  }
  return filter.limit === undefined ? records : records.slice(0, filter.limit)
}
