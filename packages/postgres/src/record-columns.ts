import {
  type AgentRecord,
  decodeAgentRecord,
  decodeRunRecord,
  encodeAgentRecordParts,
  encodeRecordParts,
  joinRecordParts,
  type RunRecord,
  SnapshotError,
} from '@cohort/core'

/**
 * How a record is kept in a row: `record` (jsonb) is the record as plain JSON, its fields at the
 * top (`record->>'status'`), as the core codec writes it; `meta` (jsonb) is
 * superjson's note of the values JSON cannot hold (a Date, a BigInt, a Map…), null when there is
 * none. jsonb cannot hold a NUL character or a lone surrogate in a string: a record with one is
 * kept exactly as the core codec's text in `record_text`, and `record` holds a copy for queries
 * with each such character replaced by U+FFFD.
 */
export interface RecordColumns {
  record: string
  meta: string | null
  record_text: string | null
}

/** A row as the store selects it: `record` and `meta` as text, and whether `record` is codec text. */
export interface RecordRow {
  record: string | null
  meta: string | null
  record_text: string | null
  codec: boolean | null
}

/** An agent's row, with the chunks of its history (`agent_history`) beside it, in order. */
export interface AgentRow extends RecordRow {
  history: string[] | null
}

/** The SQL that selects an agent's history, in order, beside its row (`agents` as `a`). */
export function historySelect(q: string): string {
  return `ARRAY(SELECT h.messages FROM ${q}.agent_history h
    WHERE h.run_id = a.run_id AND h.agent_id = a.id ORDER BY h.chunk) AS history`
}

/** The SQL that selects a `RecordRow`'s columns from a table. */
export const recordSelect = `record::text AS record, meta::text AS meta, record_text,
  (record ? 'format' OR record ? 'json') AS codec`

export function recordColumns(record: RunRecord | AgentRecord): RecordColumns {
  // The core codec's two parts: the record's JSON, and superjson's annotations when a value needs them.
  const { json, annotations } = encodeRecordParts(record)
  return columnsOf(json, annotations)
}

/**
 * An agent's row, with its last messages, and the chunks of its history before them that are
 * not stored yet, for `agent_history` (text: kept exactly, so no jsonb fallback is needed there).
 */
export function agentColumns(
  record: AgentRecord,
  from: number,
): RecordColumns & { chunks: { index: number; json: string }[] } {
  const { json, annotations, chunks } = encodeAgentRecordParts(record, from)
  return { ...columnsOf(json, annotations), chunks }
}

function columnsOf(json: string, annotations: string | null): RecordColumns {
  if (jsonbHolds(json) && (annotations === null || jsonbHolds(annotations))) {
    return { record: json, meta: annotations, record_text: null }
  }
  return {
    record: JSON.stringify(forJsonb(JSON.parse(json))),
    meta: null,
    record_text: joinRecordParts(json, annotations),
  }
}

/**
 * The run record of the row keyed `runId`. A row edited by hand (or copied) to hold another
 * run's record is refused, not taken for that run.
 */
export function runFromRow(row: RecordRow, source: string, runId: string): RunRecord {
  const record = decodeRunRecord(rowText(row), source)
  if (record.id !== runId) throw notKeyed(source, 'id', record.id, runId, 'run')
  return record
}

/** The agent record of the row keyed `runId`, `agentId`; one that is another's is refused. */
export function agentFromRow(row: AgentRow, source: string, runId: string, agentId: string): AgentRecord {
  const record = decodeAgentRecord(rowText(row), source, row.history ?? [])
  if (record.runId !== runId) throw notKeyed(source, 'runId', record.runId, runId, 'run')
  if (record.id !== agentId) throw notKeyed(source, 'id', record.id, agentId, 'agent')
  return record
}

function notKeyed(source: string, field: string, found: string, key: string, what: string): SnapshotError {
  return new SnapshotError(source, `"${found}"; expected "${key}", the ${what} its row is keyed by`, field)
}

/**
 * The codec text of a row's record, for the core codec to decode and validate. A `record`
 * that is itself codec text (`codec`) was written by a version that kept the codec's text in the
 * column, after the migration to jsonb (a process started before it): it is read as such.
 */
function rowText(row: RecordRow): string {
  if (row.record_text !== null) return row.record_text
  if (row.record === null) return ''
  if (row.codec) return row.record
  // The codec's text is the record's own JSON, with superjson's notes under `$superjson`.
  if (row.meta === null) return row.record
  return `${row.record.slice(0, row.record.lastIndexOf('}'))},"$superjson":${row.meta}}`
}

/**
 * False when the JSON text holds an escape jsonb refuses: `\u0000`, or a lone surrogate (a
 * paired one is written as the character itself). A string holding the text `\u0000` only
 * takes the exact path too.
 */
function jsonbHolds(json: string): boolean {
  return !/\\u0000|\\ud[89a-f]/.test(json)
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: NUL is one of the characters jsonb refuses
const refused = /\u0000|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g

/** A copy of a JSON value with the characters jsonb refuses replaced, in strings and keys. */
function forJsonb(value: unknown): unknown {
  if (typeof value === 'string') return value.replace(refused, '\ufffd')
  if (value === null || typeof value !== 'object') return value
  if (Array.isArray(value)) return value.map(forJsonb)
  const copy: Record<string, unknown> = {}
  for (const [key, field] of Object.entries(value)) copy[key.replace(refused, '\ufffd')] = forJsonb(field)
  return copy
}
