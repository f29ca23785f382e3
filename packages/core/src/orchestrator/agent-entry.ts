import type { AgentState } from '../agent/agent-machine.js'
import type { AgentContext, AgentStatus, ChildResult } from '../agent/context.js'
import type { AgentDefinition } from '../agent/define-agent.js'
import type { RunLimits } from '../agent/limits.js'
import type { AgentRecord } from '../persistence/records.js'
import type { AbortSwitch } from '../tools/abort-switch.js'

/** The orchestrator's entry for one agent: kept in a Map outside every machine's context. */
export interface AgentEntry {
  id: string
  definition: AgentDefinition
  limits: RunLimits
  /** Where the agent is in its lifecycle: the agent machine's snapshot (`AgentLifecycle`). */
  state: AgentState
  /**
   * The agent's whole state, always current: the think/act loop replaces it at every step, and
   * each event to the machine brings it along. Read this, never the machine snapshot's own
   * context (the one the agent was created or restored with).
   */
  context: AgentContext
  parentId: string | null
  depth: number
  settled: boolean
  /** Called once when this agent settles (parents waiting on it); an empty list may be the shared, frozen one. */
  onSettle: (() => void)[]
  /** Agents that start when this one (and their other dependencies) completes. */
  dependents: AgentEntry[]
  timer?: NodeJS.Timeout | undefined
  /** Runs in another process (a segment's children and dependencies): read, never started here. */
  remote?: true
  /** Set while this process runs the agent: each change of state is written and starts its effect. */
  attached: boolean
  /** Told after each change of state (a segment watches its agent). */
  onChange?: () => void
  /** Let go of (a detach, a segment's end): it takes no more events. */
  stopped?: true
  /** Aborts the running effect when the agent settles or stops (reused while nobody waits on it). */
  abort?: AbortSwitch | undefined
  /** Which effect is current: a result from an older one is dropped. 0 when none runs. */
  effect: number
}

/** The top-level state of an agent machine's state value. */
export function agentStatus(value: unknown): AgentStatus {
  if (typeof value === 'string') return value as AgentStatus
  return (Object.keys(value as object)[0] ?? 'running') as AgentStatus
}

/** What a suspended agent waits on (its child state of `suspended`); undefined in any other state. */
export function suspendedOn(value: unknown): 'children' | 'external' | undefined {
  return typeof value === 'object' && value !== null
    ? (value as { suspended?: 'children' | 'external' }).suspended
    : undefined
}

export function toAgentRecord(entry: AgentEntry): AgentRecord {
  const live = entry.state
  // What XState's getPersistedSnapshot returns for this machine (no spawned children, no history
  // states, no actor refs in the context), without its copy of the snapshot and walk of the
  // context; the context is the loop's, which is ahead of the machine's while it runs.
  const snapshot = {
    status: live.status,
    output: live.output,
    error: live.error,
    value: live.value,
    historyValue: {},
    context: entry.context,
    children: {},
  } as unknown as AgentRecord['snapshot']
  return {
    version: 1,
    runId: snapshot.context.runId,
    id: entry.id,
    name: entry.definition.name,
    parentId: entry.parentId,
    depth: entry.depth,
    status: agentStatus(snapshot.value),
    updatedAt: Date.now(),
    snapshot,
  }
}

/**
 * What a settled agent hands its parent (and its dependents): result, error, or fallback. `id`
 * is how the receiver knows it (its local id). Each shape is one literal: a parent collects
 * thousands of these at once, and spreads made every store into them megamorphic.
 */
export function childResult(entry: AgentEntry, id = entry.id): ChildResult {
  const { context } = entry
  const agent = entry.definition.name
  if (entry.state.value === 'completed') return { id, agent, status: 'completed', result: context.result }
  const error = context.error ?? { name: 'Error', code: 'ERROR', message: 'failed' }
  if (error.code === 'TIMEOUT' && context.fallback) {
    return { id, agent, status: 'completed', result: context.fallback.value, error, fallback: true }
  }
  return { id, agent, status: 'failed', error }
}
