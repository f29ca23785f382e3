import {
  AgentFailedError,
  CancelledError,
  CohortError,
  callStore,
  type ErrorInfo,
  fromErrorInfo,
  toErrorInfo,
} from '../errors.js'
import type { EventBus } from '../events/event-bus.js'
import type { RunEventInput } from '../events/types.js'
import { readRunRecord } from '../persistence/read.js'
import type { RunRecord, RunStatus, RunStore } from '../persistence/records.js'
import type { OrchestratorConfig } from './config.js'
import { withPeak } from './metrics.js'
import type { RunActor } from './run-machine.js'

/** What a run's outcome needs of its run. */
export interface OutcomeHost {
  readonly runId: string
  readonly store: RunStore
  readonly config: Pick<OrchestratorConfig, 'storeTimeoutMs' | 'segment'>
  readonly actor: RunActor
  readonly bus: EventBus
  emitRun(event: RunEventInput): void
}

/**
 * A run's record and its result: the record as the store has it, and how the run ends, once.
 * Settling tells the run's actor, the event listeners and whoever awaits the result, in that
 * order, and closes the event bus.
 */
export class RunOutcome {
  readonly result: Promise<unknown>
  /** The run ended in this process (not before it was resumed here): it is counted here. */
  endedHere = false
  /** Set once the run's final record is being written: nothing of the run is written after it. */
  finishing = false
  private current: RunRecord | undefined
  /** Failed before it had a record (its claim failed): settled all the same, a detach has nothing to do. */
  private failedUnrecorded = false
  private resolveResult!: (value: unknown) => void
  private rejectResult!: (error: unknown) => void

  constructor(private readonly run: OutcomeHost) {
    this.result = new Promise((resolve, reject) => {
      this.resolveResult = resolve
      this.rejectResult = reject
    })
    // The caller may never await the result; a failed run must not become an unhandled rejection.
    this.result.catch(() => {})
  }

  get record(): RunRecord | undefined {
    return this.current
  }

  get isSettled(): boolean {
    if (this.current === undefined) return this.failedUnrecorded
    return this.current.status !== 'running'
  }

  /** Takes a record read from the store as the run's own. */
  adopt(record: RunRecord): void {
    this.current = record
    this.nameRoot(record)
  }

  /** Takes `record` as the run's own at once, then stores it. */
  async keep(record: RunRecord): Promise<void> {
    this.current = record
    this.nameRoot(record)
    await this.save(record)
  }

  /** The run's actor says which agent is its root, as the record does (`run.actor.system.get(rootAgentId)`). */
  private nameRoot(record: RunRecord): void {
    const snapshot = this.run.actor.getSnapshot()
    if (snapshot.status === 'active' && snapshot.context.rootAgentId !== record.rootAgentId)
      this.run.actor.send({ type: 'ROOT', agentId: record.rootAgentId })
  }

  /** Stores the run's final status (and its peak parallelism); the record changes only once it is stored. */
  async finish(
    status: RunStatus,
    result: unknown,
    error: ErrorInfo | undefined,
    peak: number,
  ): Promise<RunRecord> {
    // A segment's run may have been ended meanwhile by another process (`cancelStored`): its
    // record stays as that one wrote it.
    if (this.run.config.segment) {
      const { store, config, runId } = this.run
      const read = () => readRunRecord(store, runId)
      const stored = await callStore('read of the run record', runId, config.storeTimeoutMs, read)
      if (stored && stored.status !== 'running') return stored
    }
    const record: RunRecord = withPeak({ ...this.current!, status, updatedAt: Date.now() }, peak)
    if (status === 'completed') record.result = result
    else if (error) record.error = error
    this.finishing = true
    await this.save(record)
    this.current = record
    return record
  }

  private save(record: RunRecord): Promise<void> {
    const { store, config } = this.run
    return callStore('write of the run record', record.id, config.storeTimeoutMs, () => store.saveRun(record))
  }

  /**
   * Settles the run as its stored record says. A run that had ended before it was resumed
   * (`endedBefore`) ends as it did, its end not told again: listeners that bill or notify on
   * `run.completed` heard it then.
   */
  settle(record: RunRecord, endedBefore = false): void {
    const { actor } = this.run
    this.current = record
    this.endedHere = !endedBefore
    const tell = (event: RunEventInput) => {
      if (!endedBefore) this.run.emitRun(event)
    }
    if (record.status === 'completed') {
      actor.send({ type: 'SETTLED', status: 'completed', result: record.result })
      tell({ type: 'run.completed', result: record.result })
      this.resolveResult(record.result)
    } else if (record.status === 'cancelled') {
      const reason = record.error?.message ?? 'cancelled'
      actor.send({ type: 'SETTLED', status: 'cancelled', error: toErrorInfo(new CancelledError(reason)) })
      tell({ type: 'run.cancelled', reason })
      this.rejectResult(new CancelledError(reason))
    } else {
      const error = record.error ?? toErrorInfo(new Error('run failed'))
      actor.send({ type: 'SETTLED', status: 'failed', error })
      tell({ type: 'run.failed', error })
      this.rejectResult(fromErrorInfo(error, record.rootAgentId))
    }
    this.run.bus.close()
  }

  /**
   * A failure of the runtime itself. The stored run stays as it was (status running, the last
   * good agent records), so it can be resumed later; only this process's record says failed.
   */
  fail(error: unknown): void {
    const info = toErrorInfo(error)
    if (this.current) this.current = { ...this.current, status: 'failed', error: info }
    else this.failedUnrecorded = true
    this.run.actor.send({ type: 'ABORT', error: info })
    this.run.emitRun({ type: 'run.failed', error: info })
    this.rejectResult(error instanceof CohortError ? error : new AgentFailedError('(runtime)', info.message))
    this.run.bus.close()
  }

  /** The run stopped here without settling: the store keeps it, a resume continues it. */
  detached(): void {
    this.run.actor.send({ type: 'DETACH' })
    this.run.emitRun({ type: 'run.detached' })
    this.rejectResult(
      new CohortError('DETACHED', `run ${this.run.runId} was detached; resume it to continue`),
    )
    this.run.bus.close()
  }
}
