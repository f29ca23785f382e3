import { assertRunId, decodeAgentRecord, decodeRunRecord, encodeRecord } from './codec.js'
import type { AgentRecord, RunFilter, RunId, RunRecord, RunStore, StoredRun } from './records.js'
import { filterRuns } from './run-filter.js'

/**
 * Keeps encoded records in memory, so a loaded run is a copy (never shared with the live
 * run) and goes through the same validation as a run read from disk.
 */
export function memoryStore(): RunStore {
  // Each record's text, as a file or a database would hold it.
  const runs = new Map<RunId, { run: string; agents: Map<string, string> }>()

  return {
    async saveRun(record) {
      assertRunId(record.id)
      const entry = runs.get(record.id)
      if (entry) entry.run = encodeRecord(record)
      else runs.set(record.id, { run: encodeRecord(record), agents: new Map() })
    },
    async saveAgent(runId, record) {
      assertRunId(runId)
      let entry = runs.get(runId)
      if (!entry) {
        entry = { run: '', agents: new Map() }
        runs.set(runId, entry)
      }
      entry.agents.set(record.id, encodeRecord(record))
    },
    async loadRun(runId) {
      assertRunId(runId)
      const entry = runs.get(runId)
      if (!entry || entry.run === '') return undefined
      const agents: AgentRecord[] = []
      for (const [id, text] of entry.agents) agents.push(decodeAgentRecord(text, `memory:${runId}/${id}`))
      return { run: decodeRunRecord(entry.run, `memory:${runId}`), agents } satisfies StoredRun
    },
    async loadAgent(runId, agentId) {
      assertRunId(runId)
      const stored = runs.get(runId)?.agents.get(agentId)
      return stored === undefined ? undefined : decodeAgentRecord(stored, `memory:${runId}/${agentId}`)
    },
    async loadRunRecord(runId) {
      assertRunId(runId)
      const text = runs.get(runId)?.run
      return text ? decodeRunRecord(text, `memory:${runId}`) : undefined
    },
    async listRuns(filter?: RunFilter) {
      const records: RunRecord[] = []
      for (const [runId, entry] of runs) {
        if (entry.run !== '') records.push(decodeRunRecord(entry.run, `memory:${runId}`))
      }
      return filterRuns(records, filter)
    },
    async deleteRun(runId) {
      assertRunId(runId)
      runs.delete(runId)
    },
  }
}
