import { type AgentRecord, assertAgentRecordOf, assertRunId } from '@cohort/core'
import type { Query } from './connection.js'
import { agentColumns } from './record-columns.js'

/**
 * The agents' rows and their new messages in one statement, so one implicit transaction: the
 * batch is stored whole or not at all. The rows go as one jsonb document whose records are
 * their own JSON, joined as they are: as text arrays, every quote of 1,000 records was escaped
 * by the client and parsed twice by the server (a batch took 3 times as long). The rare exact
 * text (`record_text`) goes beside it: jsonb cannot hold what it is kept for. The chunks of
 * long histories are rare (one every `historyChunkSize` messages of an agent) and go as text arrays.
 */
export async function saveAgentRows(
  query: Query,
  q: string,
  runId: string,
  records: AgentRecord[],
  storedMessages: readonly number[] = [],
): Promise<void> {
  assertRunId(runId)
  for (const record of records) assertAgentRecordOf(runId, record)
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
