import type { AgentActor, AgentSnapshot } from '../agent/agent-machine.js'
import type { AgentContext, AgentStatus, ChildResult } from '../agent/context.js'
import type { AgentDefinition } from '../agent/define-agent.js'
import type { RunLimits } from '../agent/limits.js'
import { SnapshotError } from '../errors.js'
import type { AgentEventInput } from '../events/types.js'
import type { AgentRecord, PersistedAgentSnapshot } from '../persistence/records.js'

/**
 * The orchestrator's entry for one agent, kept in a Map outside every machine's context. The
 * agent's state and context are its actor's: read here, changed only by events sent to it.
 */
export class AgentEntry {
  /** Agents that start when this one (and their other dependencies) completes. */
  dependents: AgentEntry[] = []
  /** Called once when this agent settles (parents waiting on it). */
  onSettle: (() => void)[] = []
  timer: NodeJS.Timeout | undefined = undefined
  /** Aborts the running effect when the agent settles or stops. */
  controller: AbortController | undefined = undefined
  /** Which effect is current: an outcome of an older one is dropped. 0 when none runs. */
  effect = 0
  /** When its running model call or tool started: a failure that cuts it off counts the time as busy. */
  busySince: number | undefined = undefined
  /** The last snapshot seen, the one being written, and the one the store holds. */
  seen: AgentSnapshot | undefined = undefined
  writing: AgentSnapshot | undefined = undefined
  stored: AgentSnapshot | undefined = undefined
  /**
   * Where the agent runs: here (`local`), in another process (`remote`: a segment's children
   * and dependencies, read but never run here), or nowhere any more (`released`: detached, or a
   * segment's end; it takes no more events and nothing of it is written).
   */
  mode: 'local' | 'remote' | 'released' = 'local'
  /** That it completed or failed, told once that is stored (`sync` durability). */
  endEvent: AgentEventInput | undefined = undefined
  /** Told after each stored change of state (a segment watches its agent). */
  onChange: (() => void) | undefined = undefined

  constructor(
    readonly id: string,
    readonly definition: AgentDefinition,
    readonly limits: RunLimits,
    readonly actor: AgentActor,
    readonly parentId: string | null,
    readonly depth: number,
  ) {}

  get snapshot(): AgentSnapshot {
    return this.actor.getSnapshot()
  }

  get context(): AgentContext {
    return this.actor.getSnapshot().context
  }

  get status(): AgentStatus {
    return agentStatus(this.actor.getSnapshot().value)
  }

  /** Completed or failed: its machine is in a final state. */
  get settled(): boolean {
    return this.actor.getSnapshot().status === 'done'
  }
}

/** The top-level state of an agent machine's state value. */
export function agentStatus(value: unknown): AgentStatus {
  if (typeof value === 'string') return value as AgentStatus
  return (Object.keys(value as object)[0] ?? 'running') as AgentStatus
}

/** The agent's stored record: its actor's persisted snapshot, with what a store indexes beside it. */
export function toAgentRecord(entry: AgentEntry): AgentRecord {
  const fromXState: unknown = entry.actor.getPersistedSnapshot()
  if (!isPersistedAgentSnapshot(fromXState)) {
    throw new SnapshotError(
      `agent ${entry.id}`,
      "XState's persisted snapshot has not the shape of an agent machine's; expected status, value, context and children",
      'snapshot',
    )
  }
  const { output, error, ...persisted } = fromXState
  // An agent machine has no output, and an actor in error is never written: no undefined to annotate.
  const snapshot: PersistedAgentSnapshot = persisted
  if (output !== undefined) snapshot.output = output
  if (error !== undefined) snapshot.error = error
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
 * XState types every persisted snapshot as `Snapshot<unknown>`; an agent actor's holds its machine's
 * state value and context. The parts XState makes are checked here, on every write, for the price
 * of a few reads (a full parse is what reading a record back does: `persistedAgentSnapshotSchema`).
 */
function isPersistedAgentSnapshot(value: unknown): value is PersistedAgentSnapshot {
  if (typeof value !== 'object' || value === null) return false
  if (!('status' in value && 'value' in value && 'context' in value && 'children' in value)) return false
  const { status, value: state, context, children } = value
  return (
    (status === 'active' || status === 'done') &&
    (typeof state === 'string' || (typeof state === 'object' && state !== null)) &&
    typeof context === 'object' &&
    context !== null &&
    typeof children === 'object' &&
    children !== null
  )
}

/**
 * What a settled agent hands its parent (and its dependents): result, error, or fallback. `id`
 * is how the receiver knows it (its local id).
 */
export function childResult(entry: AgentEntry, id = entry.id): ChildResult {
  const { context } = entry
  const agent = entry.definition.name
  if (entry.status === 'completed') return { id, agent, status: 'completed', result: context.result }
  const error = context.error ?? { name: 'Error', code: 'ERROR', message: 'failed' }
  if (error.code === 'TIMEOUT' && context.fallback) {
    return { id, agent, status: 'completed', result: context.fallback.value, error, fallback: true }
  }
  return { id, agent, status: 'failed', error }
}

export function tokensOf(context: AgentContext): number {
  return context.usage.promptTokens + context.usage.completionTokens
}
