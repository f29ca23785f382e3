import type { AgentRecord, RunId, RunRecord, RunStore } from './records.js'

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
