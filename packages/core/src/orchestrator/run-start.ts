import type { AgentMachineEvent } from '../agent/agent-machine.js'
import { CancelledError, callStore, InvalidInputError, SnapshotError } from '../errors.js'
import type { RunEventInput } from '../events/types.js'
import type { AgentWriter } from '../persistence/agent-writer.js'
import { readRunRecord } from '../persistence/read.js'
import type { AgentRecord, RunRecord, StoredRun } from '../persistence/records.js'
import type { TokenBudget } from '../scheduler/token-budget.js'
import { nextTurn } from '../thenable.js'
import { type AgentEntry, tokensOf } from './agent-entry.js'
import type { OrchestratorConfig } from './config.js'
import { type Continuation, type ContinueTarget, readContinuation } from './continuation.js'
import { deadlinesAfterStop } from './deadlines.js'
import { type BusyTracker, resumedRecord } from './metrics.js'
import type { AgentRegistry, NewAgent } from './registry.js'
import { letGo } from './run-end.js'
import type { RunOutcome } from './run-outcome.js'
import type { Settlement } from './settlement.js'

/** What the start of a run (a new one, or one restored from the store) sees of it: the `Orchestrator`. */
export interface StartHost {
  readonly runId: string
  readonly config: OrchestratorConfig
  readonly agents: AgentRegistry
  readonly registry: ReadonlyMap<string, AgentEntry>
  readonly settlement: Settlement
  readonly outcome: RunOutcome
  readonly busy: BusyTracker
  readonly budget: TokenBudget
  readonly writer: AgentWriter<AgentEntry>
  ending: boolean
  readonly cancelReason: string | undefined
  /** The run's creation or restoration while it is under way: a detach or a snapshot waits for it. */
  beginning: Promise<void> | undefined
  runEnded: Promise<void> | undefined
  emitRun(event: RunEventInput): void
  abort(error: unknown): void
  createAgent(agent: NewAgent): AgentEntry
  restoreAgent(record: AgentRecord): AgentEntry
  failAgent(entry: AgentEntry, error: unknown): void
  send(entry: AgentEntry, event: AgentMachineEvent): void
  runEffect(entry: AgentEntry): void
  endRun(root: AgentEntry): Promise<void>
}

/**
 * Creates the run record and the root agent, then starts it (unless `start` is false: a host
 * will). A run id the caller chose is refused when the store already holds it, and an agent to
 * continue (`continueFrom`) that is not stored and settled: nothing is written, nothing is lost.
 */
export async function beginRun(
  host: StartHost,
  agentName: string,
  task: string,
  start: boolean,
  chosenId: boolean,
  continueFrom?: ContinueTarget,
): Promise<void> {
  try {
    if (start) await host.config.claims?.claim()
    if (chosenId && (await isStored(host))) {
      throw new InvalidInputError(
        `run ${host.runId} already exists in the store: resume it, or start with another id`,
      )
    }
    const continuation = continueFrom && (await readContinuation(host.config, continueFrom))
    const now = Date.now()
    await host.outcome.keep({
      version: 1,
      id: host.runId,
      agent: agentName,
      task,
      rootAgentId: agentName,
      status: 'running',
      createdAt: now,
      updatedAt: now,
      ...(!start && { distributed: true as const }),
      ...(continuation && { continuedFrom: continuation.from }),
    })
    host.emitRun({ type: 'run.started', agent: agentName, task, rootAgentId: agentName })
    await startRoot(host, agentName, task, start, continuation)
  } catch (error) {
    host.abort(error)
    throw error
  }
}

async function isStored(host: StartHost): Promise<boolean> {
  try {
    const { store, storeTimeoutMs } = host.config
    const read = () => readRunRecord(store, host.runId)
    return (await callStore('read of the run record', host.runId, storeTimeoutMs, read)) !== undefined
  } catch (error) {
    // An unreadable record still takes the id; a store that cannot answer says so.
    if (error instanceof SnapshotError) return true
    throw error
  }
}

/**
 * The root made and stored, then started. A continued session's root has its messages before the
 * task, and its workspace starts as a copy of the agent's it continues, when that one has one.
 */
async function startRoot(
  host: StartHost,
  agentName: string,
  task: string,
  start = true,
  continuation?: Continuation,
): Promise<void> {
  const definition = host.agents.definition(agentName)
  const { workspaces } = host.config
  if (continuation && workspaces) await workspaces.copyInto(host.runId, agentName, continuation.from)
  const root = host.createAgent({
    id: agentName,
    definition,
    task,
    parentId: null,
    depth: 0,
    priority: definition.priority ?? 0,
    timeoutMs: host.agents.limitsFor(definition).timeoutMs,
    ...(continuation && { history: continuation.history }),
  })
  await host.writer.written(root)
  if (host.cancelReason !== undefined) host.failAgent(root, new CancelledError(host.cancelReason))
  else if (start && !host.ending) host.settlement.startWhenReady(root)
}

/**
 * Rebuilds every agent's actor from its record. What their states call for (in-flight model
 * calls, tools and waits run again) starts on the next turn of the event loop, so the caller
 * that resumed the run can subscribe to its events first.
 */
export async function restoreRun(host: StartHost, stored: StoredRun): Promise<void> {
  // A record copied under another id would be written back, and run on, as the run it names.
  if (stored.run.id !== host.runId)
    throw new SnapshotError(`run ${host.runId}`, `the record of run "${stored.run.id}" is stored here`, 'id')
  host.outcome.adopt(stored.run)
  // Metrics count the whole run: its peak in the processes before this one too.
  host.busy.peak = Math.max(host.busy.peak, stored.run.peakParallelism ?? 0)
  const entries = stored.agents.map((record) => host.restoreAgent(record))
  // A crash between saving the run and its root agent leaves no agent record: the root starts
  // again. Children without their root are a store that lost a record.
  const rootless = entries.length === 0 && stored.run.status === 'running'
  if (!rootless && !host.registry.has(stored.run.rootAgentId)) {
    throw new SnapshotError(
      `run ${host.runId}`,
      `root agent "${stored.run.rootAgentId}" has no record`,
      'rootAgentId',
    )
  }
  for (const entry of entries) checkLinks(host, entry)
  // When it stopped: at its detach, or after its last stored step (a crash).
  const stoppedAt =
    stored.run.detachedAt ?? Math.max(stored.run.updatedAt, ...stored.agents.map((agent) => agent.updatedAt))
  // A running agent's effect in flight at a crash began after its last stored step, and runs again.
  const storedAt = new Map(stored.agents.map((agent) => [agent.id, agent.updatedAt]))
  const lostOf = (entry: AgentEntry) =>
    entry.status === 'running' ? stoppedAt - (storedAt.get(entry.id) ?? stoppedAt) : 0
  if (stored.run.status === 'running') {
    // The time stopped is not wall time, after a crash as after a detach. Stored before anything
    // runs again: after a later crash, this segment's time must not count as stopped.
    await host.outcome.keep(resumedRecord({ ...stored.run, detachedAt: stoppedAt }, Date.now()))
  }
  host.beginning = nextTurn()
    .then(() =>
      rootless ? restartRoot(host, stored.run) : proceed(host, stored.run, entries, stoppedAt, lostOf),
    )
    .catch((error: unknown) => host.abort(error))
}

/**
 * The records of a run refer to each other; one that refers to no record is refused, not run on
 * with a made-up failure in its place (and written back). A parent lists a child only once the
 * child is stored (a launch waits for its children's writes), so a missing child is a record the
 * store lost; an agent waits only on its own children.
 */
function checkLinks(host: StartHost, entry: AgentEntry): void {
  const refused = (what: string, field: string) =>
    new SnapshotError(`run ${host.runId}`, `agent "${entry.id}" ${what}`, field)
  if (entry.parentId !== null && !host.registry.has(entry.parentId))
    throw refused(`names parent "${entry.parentId}", which has no record`, 'parentId')
  const { children, waitingOn } = entry.context
  const lost = children.find((child) => !host.registry.has(child.id))
  if (lost) throw refused(`lists child "${lost.id}", which has no record`, 'children')
  const unknown = waitingOn?.find((localId) => !children.some((child) => child.localId === localId))
  if (unknown !== undefined)
    throw refused(`waits on "${unknown}", which is none of its children`, 'waitingOn')
}

async function restartRoot(host: StartHost, run: RunRecord): Promise<void> {
  if (host.ending) return
  host.emitRun({ type: 'run.resumed', agents: 0 })
  // The agent it continues is settled, so it is read as it was at the run's start.
  const continuation = run.continuedFrom && (await readContinuation(host.config, run.continuedFrom))
  await startRoot(host, run.agent, run.task, true, continuation)
}

/** A restored run goes on, unless it was detached or cancelled in between. */
function proceed(
  host: StartHost,
  run: RunRecord,
  entries: AgentEntry[],
  stoppedAt: number,
  lostOf: (entry: AgentEntry) => number,
): void {
  if (host.ending) return
  for (const entry of entries) host.budget.book(tokensOf(entry.context))
  const ended = run.status === 'running' ? {} : { ended: run.status }
  host.emitRun({ type: 'run.resumed', agents: entries.length, ...ended })
  if (run.status !== 'running') {
    host.ending = true
    void letGo(host).then(() => host.outcome.settle(run, true))
    return
  }
  host.settlement.endOrphans(entries)
  const stoppedFor = Math.max(0, Date.now() - stoppedAt)
  for (const [entry, deadline] of deadlinesAfterStop(entries, host.registry, stoppedFor, lostOf))
    host.send(entry, { type: 'DEADLINE', deadline })
  for (const entry of entries) host.runEffect(entry)
  for (const entry of entries) {
    if (entry.settled) continue
    if (entry.status === 'idle') host.settlement.startWhenReady(entry)
    else if (entry.context.deadline !== null) host.settlement.armTimeout(entry, entry.context.deadline)
  }
  const root = host.registry.get(run.rootAgentId)!
  if (root.settled) host.runEnded = host.endRun(root)
}
