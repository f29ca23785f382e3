import type { Awaiting } from '../agent/context.js'
import type { EventBus } from '../events/event-bus.js'
import type { CohortEvent, CohortEventType } from '../events/types.js'
import { RunControl } from '../orchestrator/control.js'
import { computeRunMetrics, type RunMetrics, runWallMs } from '../orchestrator/metrics.js'
import type { Orchestrator } from '../orchestrator/orchestrator.js'
import type { RunActor } from '../orchestrator/run-machine.js'
import type { RunStatus, StoredRun } from '../persistence/records.js'

/** The whole run as plain, superjson-serializable data: the run record and one record per agent. */
export type RunSnapshot = StoredRun

/**
 * A handle on one run: its result, its events, its state as data, and a way to stop it. `Result`
 * is its root agent's result (typed by that agent's `output` schema when the runtime knows it).
 */
export class Run<Result = unknown> {
  private readonly control: RunControl

  constructor(
    private readonly orchestrator: Orchestrator,
    private readonly bus: EventBus,
  ) {
    this.control = new RunControl(orchestrator)
  }

  get id(): string {
    return this.orchestrator.runId
  }

  /** The root agent's `finish` value; rejects with a typed error when the run fails or is cancelled. */
  get result(): Promise<Result> {
    return this.orchestrator.result as Promise<Result>
  }

  /**
   * The run's XState actor (`runMachine`): subscribe to it, read its snapshot, or find an agent's
   * actor with `run.actor.system.get(agentId)` while the agent lives.
   */
  get actor(): RunActor {
    return this.orchestrator.actor
  }

  get status(): RunStatus {
    return this.orchestrator.record?.status ?? 'running'
  }

  /** Every event from now until the run settles. */
  events(): AsyncIterable<CohortEvent> {
    return this.bus.iterate()
  }

  /** Subscribes to every event (`'event'`) or one type; returns the unsubscribe function. */
  on<T extends CohortEventType>(
    type: T | 'event',
    listener: (event: Extract<CohortEvent, { type: T }>) => void,
  ): () => void {
    return this.bus.on(type, listener)
  }

  snapshot(): Promise<RunSnapshot> {
    return this.orchestrator.snapshot()
  }

  /**
   * Approves the tool call `callId` that agent `agentId` waits on (`defineTool({ needsApproval })`).
   * Both are named: models reuse native call ids (`call_0`) across agents. Like `reject`, `resume`
   * and `send`, it throws at once when the agent cannot take it, and resolves once the approval is
   * stored (a crash before then loses it; the agent asks again).
   */
  approve(agentId: string, callId: string): Promise<void> {
    return this.control.approve(agentId, callId)
  }

  /** Refuses the tool call `callId` of agent `agentId`; the model is told `rejected: <reason>` and goes on. */
  reject(agentId: string, callId: string, reason = 'rejected by a person'): Promise<void> {
    return this.control.reject(agentId, callId, reason)
  }

  /** Continues an agent suspended by `ctx.suspend(prompt)` with `payload`, null if none (or approves its pending call). */
  resume(agentId: string, payload?: unknown): Promise<void> {
    return this.control.resume(agentId, payload)
  }

  /**
   * The agents that wait on a person now: for an approval of a tool call, or an answer to
   * `ctx.suspend`. Read from this process's memory, without touching the store.
   */
  awaiting(): { agentId: string; awaiting: Awaiting }[] {
    const waiting: { agentId: string; awaiting: Awaiting }[] = []
    for (const entry of this.orchestrator.registry.values()) {
      const { awaiting } = entry.context
      if (awaiting && entry.snapshot.matches({ suspended: 'external' }))
        waiting.push({ agentId: entry.id, awaiting })
    }
    return waiting
  }

  /**
   * Delivers a message into the agent's next model turn. Resolves once the agent's record holding
   * it is stored (a crash before then loses it); rejects with the store's error. Throws at once
   * when the agent cannot take it (unknown, ended, an empty text).
   */
  send(agentId: string, text: string): Promise<void> {
    return this.control.send(agentId, text)
  }

  /**
   * Wall time (the time the run was running, over every process that ran it: not while detached),
   * busy time, speedup, efficiency, failures, tokens, cost, and per-agent timings.
   */
  metrics(): RunMetrics {
    const record = this.orchestrator.record
    return computeRunMetrics(
      this.id,
      record?.status ?? 'running',
      record ? runWallMs(record) : 1,
      this.orchestrator.registry.values(),
      this.orchestrator.busy.peak,
    )
  }

  /**
   * Stops the run in this process without settling it (a server shutting down): what is stored
   * stays as the last step left it, and `runtime.resume(id)` continues it here or elsewhere.
   */
  async detach(): Promise<void> {
    await this.orchestrator.detach()
  }

  /** Cancels every agent of the run; `result` rejects with `CancelledError`. */
  async cancel(reason?: string): Promise<void> {
    this.orchestrator.cancel(reason)
    await this.orchestrator.result.catch(() => {})
  }
}
