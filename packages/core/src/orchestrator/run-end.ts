import type { AgentMachineEvent } from '../agent/agent-machine.js'
import { CancelledError } from '../errors.js'
import type { AgentWriter } from '../persistence/agent-writer.js'
import type { RunRecord, RunStatus } from '../persistence/records.js'
import type { AgentEntry } from './agent-entry.js'
import type { OrchestratorConfig } from './config.js'
import { deadlinesAfterStop } from './deadlines.js'
import { type BusyTracker, detachedRecord } from './metrics.js'
import type { RunActor } from './run-machine.js'
import type { RunOutcome } from './run-outcome.js'

/** What the end of a run (a cancel, its root's end, a detach, an abort) sees of it: the `Orchestrator`. */
export interface EndHost {
  readonly config: OrchestratorConfig
  readonly registry: ReadonlyMap<string, AgentEntry>
  readonly actor: RunActor
  readonly writer: AgentWriter<AgentEntry>
  readonly busy: BusyTracker
  readonly outcome: RunOutcome
  readonly isSettled: boolean
  /** The run's creation (`beginSoon`) while it is under way: a detach waits for it. */
  readonly beginning: Promise<void> | undefined
  /** Set once the run began to end (its root settled, a detach, an abort). */
  ending: boolean
  /** Set once a detach began: the run will not settle here, a resume must read it from the store. */
  detaching: boolean
  cancelReason: string | undefined
  failAgent(entry: AgentEntry, error: unknown): void
  send(entry: AgentEntry, event: AgentMachineEvent): void
  stopEffect(entry: AgentEntry, reason?: () => unknown): void
  release(entry: AgentEntry): void
}

/** Ends every unsettled agent; the run settles as cancelled. */
export function cancelRun(host: EndHost, reason: string): void {
  if (host.isSettled || host.cancelReason !== undefined) return
  host.cancelReason = reason
  host.actor.send({ type: 'CANCEL', reason })
  // One error for all: each agent keeps its plain description, and a stack costs microseconds.
  const cancelled = new CancelledError(reason)
  for (const entry of host.registry.values()) host.failAgent(entry, cancelled)
}

/** Settles the run once its root agent has settled. */
export async function endRun(host: EndHost, root: AgentEntry): Promise<void> {
  if (host.ending) return
  host.ending = true
  const finished = new CancelledError('the run finished')
  for (const entry of host.registry.values()) host.failAgent(entry, finished)
  const { context } = root
  let status: RunStatus = root.status === 'completed' ? 'completed' : 'failed'
  // A root failed by a cancel is a cancelled run, also when the cancel was cut off by a detach
  // (a shutdown) before the run's record said so, and the run ends in a later resume.
  if (status === 'failed' && (host.cancelReason !== undefined || context.error?.code === 'CANCELLED'))
    status = 'cancelled'
  let record: RunRecord
  try {
    await host.writer.flush()
    record = await host.outcome.finish(status, context.result, context.error, host.busy.peak)
  } catch (error) {
    void letGo(host)
    return host.outcome.fail(error)
  }
  await letGo(host)
  host.outcome.settle(record)
}

/**
 * Stops every agent where it is: the store keeps the last real state, and a later `resume`
 * continues from it (a server shutting down). The result rejects with DETACHED.
 */
export async function detachRun(host: EndHost): Promise<void> {
  if (host.isSettled || host.ending) return
  host.ending = true
  host.detaching = true
  // A run started a moment ago is stored first, so that a resume finds it.
  await host.beginning
  if (host.isSettled) return
  const stoppedAt = Date.now()
  const entries = [...host.registry.values()]
  const now = performance.now()
  const cutOff = (entry: AgentEntry) =>
    entry.busySince !== undefined && entry.mode === 'local' && !entry.settled ? now - entry.busySince : 0
  const deadlines = deadlinesAfterStop(entries, host.registry, 0, cutOff)
  // Marked first, so that no effect starts; their last changes are written, then they stop.
  for (const entry of entries) {
    clearTimeout(entry.timer)
    // Counted while its effect still runs, so that the change starts nothing.
    const busyMs = cutOff(entry)
    if (busyMs > 0) host.send(entry, { type: 'CUT_OFF', busyMs })
    const deadline = deadlines.get(entry)
    if (deadline !== undefined) host.send(entry, { type: 'DEADLINE', deadline })
    host.stopEffect(entry)
  }
  for (const entry of entries) entry.mode = entry.mode === 'local' ? 'released' : entry.mode
  try {
    await host.writer.flush()
    // When it stopped, so that the time until a resume is not counted as running (metrics).
    const record = host.outcome.record
    if (record?.status === 'running')
      await host.outcome.keep(detachedRecord(record, stoppedAt, host.busy.peak))
  } finally {
    for (const entry of entries)
      if (!entry.settled) host.actor.send({ type: 'STOP_AGENT', agent: entry.actor })
    await letGo(host)
    host.outcome.detached()
  }
}

/**
 * Lets go of this process's claim on the run, before whoever awaits its end hears of it. A release
 * that fails or times out changes nothing of how the run ended: its record is written, which is
 * what a caller awaits; the claim lapses by itself (`claimMs`), and another runtime of this
 * process takes it over at once.
 */
export function letGo(host: Pick<EndHost, 'config'>): Promise<void> {
  return host.config.claims?.release().catch(() => {}) ?? Promise.resolve()
}

/**
 * A failure of the runtime itself (a store that cannot write, a claim another process took):
 * stop every agent and fail the run here; the store keeps what it holds.
 */
export function abortRun(host: EndHost, error: unknown): void {
  if (host.isSettled) return
  host.ending = true
  for (const entry of host.registry.values()) host.release(entry)
  // Nothing more of it is written: another process may hold it now.
  host.writer.stop(error)
  void letGo(host)
  host.outcome.fail(error)
  host.config.segment?.failed(error)
}
