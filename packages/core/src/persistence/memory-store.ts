import {
  assertAgentRecordOf,
  assertRunId,
  decodeAgentRecord,
  decodeRunRecord,
  encodeAgentRecordParts,
  encodeRecord,
  joinRecordParts,
} from './codec.js'
import {
  type AgentRecord,
  claimGranted,
  type KeepingStore,
  noClaim,
  type RunClaim,
  type RunFilter,
  type RunId,
  type RunRecord,
  type RunRetention,
  type StoredRun,
} from './records.js'
import { byAge, checkRetention, checkRunFilter, filterRuns } from './run-filter.js'

export interface MemoryStoreOptions {
  /**
   * Which finished runs to keep, over the default `{ maxFinishedRuns: 1000 }`, so a process that
   * runs for long holds a bounded number of runs (`maxFinishedRuns: Infinity` keeps every one).
   */
  retention?: RunRetention
}

/** An agent's record, with its last messages, and the chunks of its history before them. */
interface StoredAgent {
  text: string
  history: string[]
}

/** What `memoryStore()` keeps unless told otherwise: about 11 KB a finished run of three agents. */
export const defaultMemoryRetention = { maxFinishedRuns: 1000 } as const satisfies RunRetention

/**
 * Keeps encoded records in memory, so a loaded run is a copy (never shared with the live
 * run) and goes through the same validation as a run read from disk.
 */
export function memoryStore(options: MemoryStoreOptions = {}): KeepingStore {
  const retention = { ...defaultMemoryRetention, ...checkRetention(options.retention) }
  // Each record's text, as a file or a database would hold it; an agent's history chunks beside it.
  const runs = new Map<RunId, { run: string; agents: Map<string, StoredAgent> }>()
  const finished = finishedRuns()
  const claims = new Map<RunId, RunClaim>()

  /** Removes, oldest first, the finished runs `kept` does not keep. */
  const prune = (kept: RunRetention): RunId[] => {
    const removed = finished.removeBeyond(kept, Date.now())
    for (const runId of removed) {
      runs.delete(runId)
      claims.delete(runId)
    }
    return removed
  }

  return {
    async saveRun(record) {
      assertRunId(record.id)
      const entry = runs.get(record.id)
      if (entry) entry.run = encodeRecord(record)
      else runs.set(record.id, { run: encodeRecord(record), agents: new Map() })
      if (record.status === 'running') finished.remove(record.id)
      else {
        finished.add(record.id, record.updatedAt)
        prune(retention)
      }
    },
    async saveAgent(runId, record, storedMessages = 0) {
      assertAgentRecordOf(runId, record)
      let entry = runs.get(runId)
      if (!entry) {
        entry = { run: '', agents: new Map() }
        runs.set(runId, entry)
      }
      const stored = entry.agents.get(record.id)
      const { json, annotations, chunks } = encodeAgentRecordParts(record, stored ? storedMessages : 0)
      const text = joinRecordParts(json, annotations)
      if (stored === undefined) {
        entry.agents.set(record.id, { text, history: chunks.map((chunk) => chunk.json) })
        return
      }
      stored.text = text
      // A chunk is written at its index, over one of an older history.
      for (const chunk of chunks) stored.history[chunk.index] = chunk.json
    },
    async loadRun(runId) {
      assertRunId(runId)
      const entry = runs.get(runId)
      if (!entry || entry.run === '') return undefined
      const agents: AgentRecord[] = []
      for (const [id, { text, history }] of entry.agents)
        agents.push(decodeAgentRecord(text, `memory:${runId}/${id}`, history))
      return { run: decodeRunRecord(entry.run, `memory:${runId}`), agents } satisfies StoredRun
    },
    async loadAgent(runId, agentId) {
      assertRunId(runId)
      const stored = runs.get(runId)?.agents.get(agentId)
      return stored === undefined
        ? undefined
        : decodeAgentRecord(stored.text, `memory:${runId}/${agentId}`, stored.history)
    },
    async loadRunRecord(runId) {
      assertRunId(runId)
      const text = runs.get(runId)?.run
      return text ? decodeRunRecord(text, `memory:${runId}`) : undefined
    },
    async listRuns(filter?: RunFilter) {
      checkRunFilter(filter)
      const records: RunRecord[] = []
      for (const [runId, entry] of runs) {
        if (entry.run !== '') records.push(decodeRunRecord(entry.run, `memory:${runId}`))
      }
      return filterRuns(records, filter)
    },
    async deleteRun(runId) {
      assertRunId(runId)
      runs.delete(runId)
      claims.delete(runId)
      finished.remove(runId)
    },
    async claimRun(runId, request) {
      assertRunId(runId)
      const current = claims.get(runId)
      if (!claimGranted(current, request)) return { ...(current ?? noClaim) }
      claims.set(runId, { owner: request.owner, until: request.until })
      return { owner: request.owner, until: request.until }
    },
    async releaseRun(runId, owner) {
      if (claims.get(runId)?.owner === owner) claims.delete(runId)
    },
    async prune(kept) {
      return prune(kept === undefined ? retention : checkRetention(kept))
    },
  }
}

/**
 * The finished runs' ids and times, oldest first (`byAge`): retention removes from the front, and
 * stops at the first run it keeps. Runs finish in time order, so a finished run mostly goes at
 * the end; one that does not (finished in the same millisecond with a smaller id, or saved with
 * an earlier time) is put in its place by a binary search, not by sorting them all again.
 */
function finishedRuns() {
  const order: { id: RunId; updatedAt: number }[] = []
  const times = new Map<RunId, number>()
  /** Where `run` is, or goes, in `order`. */
  const indexOf = (run: { id: RunId; updatedAt: number }) => {
    let low = 0
    let high = order.length
    while (low < high) {
      const middle = (low + high) >>> 1
      if (byAge(order[middle]!, run) < 0) low = middle + 1
      else high = middle
    }
    return low
  }
  const remove = (id: RunId) => {
    const updatedAt = times.get(id)
    if (updatedAt === undefined) return
    times.delete(id)
    order.splice(indexOf({ id, updatedAt }), 1)
  }
  return {
    add(id: RunId, updatedAt: number) {
      remove(id)
      const run = { id, updatedAt }
      const last = order.at(-1)
      if (last === undefined || byAge(last, run) <= 0) order.push(run)
      else order.splice(indexOf(run), 0, run)
      times.set(id, updatedAt)
    },
    remove,
    removeBeyond(retention: RunRetention, now: number): RunId[] {
      const max = retention.maxFinishedRuns ?? Number.POSITIVE_INFINITY
      const cutoff = retention.maxAgeMs === undefined ? Number.NEGATIVE_INFINITY : now - retention.maxAgeMs
      let count = 0
      while (count < order.length && (order.length - count > max || order[count]!.updatedAt < cutoff)) count++
      const removed = order.splice(0, count).map((run) => run.id)
      for (const id of removed) times.delete(id)
      return removed
    },
  }
}
