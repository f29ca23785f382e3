import { callStore, RunNotFoundError } from '../errors.js'
import type { AgentRecord, RunId, RunRecord, RunStore, StoredRun } from './records.js'

/** The run record alone, through the store's own reader when it has one (no agents read). */
export async function readRunRecord(store: RunStore, runId: RunId): Promise<RunRecord | undefined> {
  return store.loadRunRecord ? store.loadRunRecord(runId) : (await store.loadRun(runId))?.run
}

/** One agent's record, through the store's own reader when it has one. */
export async function readAgentRecord(
  store: RunStore,
  runId: RunId,
  agentId: string,
): Promise<AgentRecord | undefined> {
  if (store.loadAgent) return store.loadAgent(runId, agentId)
  return (await store.loadRun(runId))?.agents.find((agent) => agent.id === agentId)
}

/** What a run reads of its store, each read bounded by `storeTimeoutMs` like its writes. */
export interface RunReads {
  /** The run record; a run that is not stored is RUN_NOT_FOUND. */
  runRecord(): Promise<RunRecord>
  agentRecord(agentId: string): Promise<AgentRecord | undefined>
  wholeRun(): Promise<StoredRun | undefined>
}

export function runReads(store: RunStore, runId: RunId, timeoutMs: number): RunReads {
  return {
    async runRecord() {
      const record = await callStore('read of the run record', runId, timeoutMs, () =>
        readRunRecord(store, runId),
      )
      if (!record) throw new RunNotFoundError(runId)
      return record
    },
    agentRecord: (agentId) =>
      callStore(`read of agent ${agentId}`, runId, timeoutMs, () => readAgentRecord(store, runId, agentId)),
    wholeRun: () => callStore('read', runId, timeoutMs, () => store.loadRun(runId)),
  }
}
