import { createActor, type InspectionEvent, type Observer } from 'xstate'
import { type AgentMachineEvent, type AgentSnapshot, failEvent } from '../agent/agent-machine.js'
import type { AgentContext } from '../agent/context.js'
import type { AgentDefinition } from '../agent/define-agent.js'
import type { RunLimits } from '../agent/limits.js'
import {
  AgentFailedError,
  CancelledError,
  CohortError,
  type ErrorInfo,
  fromErrorInfo,
  InvalidInputError,
  SnapshotError,
  toErrorInfo,
} from '../errors.js'
import type { EventBus } from '../events/event-bus.js'
import type { AgentEventInput, RunEventInput } from '../events/types.js'
import type { ChatModel } from '../models/types.js'
import { AgentWriter } from '../persistence/agent-writer.js'
import { readRunRecord } from '../persistence/read.js'
import type { AgentRecord, RunRecord, RunStatus, RunStore, StoredRun } from '../persistence/records.js'
import type { Action } from '../protocol/actions.js'
import type { Redactor } from '../protocol/redact.js'
import type { Scheduler } from '../scheduler/scheduler.js'
import { TokenBudget } from '../scheduler/token-budget.js'
import type { Workspaces } from '../workspaces/workspaces.js'
import { type AgentEntry, toAgentRecord, tokensOf } from './agent-entry.js'
import { type AgentServices, createAgentServices, type EffectHost } from './agent-services.js'
import { type LaunchHost, type LaunchOutcome, launchChildren, type SegmentHooks } from './launch.js'
import { BusyTracker, detachedRecord, resumedRecord } from './metrics.js'
import { AgentRegistry, type NewAgent } from './registry.js'
import { type RunActor, runMachine } from './run-machine.js'
import { Settlement } from './settlement.js'

function endedReason(context: AgentContext): unknown {
  return context.error ? fromErrorInfo(context.error) : new CancelledError('settled')
}

/**
 * When a step is written. `sync`: before any effect that depends on it starts (the next model
 * call, a tool call, a child's first call), so a crash repeats only what was in flight. `async`:
 * behind the agents, for throughput; a crash may then repeat the steps not yet written.
 */
export type Durability = 'sync' | 'async'

/** An XState inspector: `createBrowserInspector().inspect`, or any function of inspection events. */
export type Inspector = Observer<InspectionEvent> | ((event: InspectionEvent) => void)

export interface OrchestratorConfig {
  runId: string
  definitions: ReadonlyMap<string, AgentDefinition>
  model: ChatModel | undefined
  limits: RunLimits
  store: RunStore
  bus: EventBus
  scheduler: Scheduler
  onCycle: 'refuse' | 'sequential'
  redact: Redactor
  /** A store write that takes longer fails the run with a StoreError. */
  storeTimeoutMs: number
  workspaces: Workspaces | undefined
  durability: Durability
  inspect?: Inspector | undefined
  /** Set when this orchestrator runs one segment of one agent for a distributed host. */
  segment?: SegmentHooks | undefined
}

type LaunchAction = Extract<Action, { action: 'launch_subagents' }>

/**
 * One per run: the run's XState actor (`runMachine`) and the parent of every agent's actor. It
 * keeps the registry of agents (a Map, never a machine's context), writes each changed agent,
 * and runs the effect each agent's state calls for once its step is stored (`durability`),
 * sending the outcome back to the agent's actor. Settlement of children and dependencies is
 * `Settlement`'s; the effects themselves are `createAgentServices`'.
 */
export class Orchestrator implements EffectHost {
  /** The run's agents by id (`AgentRegistry`). */
  readonly registry: ReadonlyMap<string, AgentEntry>
  private readonly agents: AgentRegistry
  readonly result: Promise<unknown>
  readonly busy = new BusyTracker()
  /** The run's actor: its snapshot says where the run is; every agent's actor is its child. */
  readonly actor: RunActor
  readonly writer: AgentWriter<AgentEntry>
  /** Tokens the run used (`maxRunTokens`), and those reserved by its calls in flight. */
  readonly budget: TokenBudget
  /** Set once the root agent settled: resolves when the run record is final. */
  runEnded: Promise<void> | undefined
  private readonly services: AgentServices
  private readonly settlement: Settlement
  private readonly clockStart = performance.now()
  /** Effects started so far: each gets the next number as its token. */
  private effects = 0
  private runRecord: RunRecord | undefined
  private resolveResult!: (value: unknown) => void
  private rejectResult!: (error: unknown) => void
  private ending = false
  cancelReason: string | undefined

  constructor(readonly config: OrchestratorConfig) {
    this.budget = new TokenBudget(config.limits.maxRunTokens, `run ${config.runId}`)
    this.actor = createActor(runMachine, {
      id: `run ${config.runId}`,
      input: { runId: config.runId },
      ...(config.inspect !== undefined && { inspect: config.inspect }),
    })
    this.actor.start()
    this.agents = new AgentRegistry(
      config.runId,
      this.actor,
      config.definitions,
      config.limits,
      config.store,
      {
        changed: (entry, snapshot) => this.changed(entry, snapshot),
        emitted: (entry, event) => this.emitAgent(entry.context, event),
        failed: (error) => this.abort(error),
      },
    )
    this.registry = this.agents.entries
    this.services = createAgentServices(this)
    this.settlement = new Settlement(this)
    this.writer = new AgentWriter(
      config.store,
      config.runId,
      config.storeTimeoutMs,
      (error) => this.abort(error),
      (entry) => {
        entry.writing = entry.actor.getSnapshot()
        return toAgentRecord(entry)
      },
      (entry) => entry.writing === entry.actor.getSnapshot(),
    )
    this.result = new Promise((resolve, reject) => {
      this.resolveResult = resolve
      this.rejectResult = reject
    })
    // The caller may never await the result; a failed run must not become an unhandled rejection.
    this.result.catch(() => {})
  }

  get runId(): string {
    return this.config.runId
  }
  get bus(): EventBus {
    return this.config.bus
  }
  get scheduler(): Scheduler {
    return this.config.scheduler
  }
  get redact(): Redactor {
    return this.config.redact
  }
  get workspaces(): Workspaces | undefined {
    return this.config.workspaces
  }
  get record(): RunRecord | undefined {
    return this.runRecord
  }
  get isSettled(): boolean {
    return this.runRecord !== undefined && this.runRecord.status !== 'running'
  }

  elapsedMs(): number {
    return Math.round(performance.now() - this.clockStart)
  }

  modelFor(definition: AgentDefinition): ChatModel {
    const model = definition.model ?? this.config.model
    if (!model)
      throw new CohortError('NO_MODEL', `agent "${definition.name}" has no model and the runtime has none`)
    return model
  }

  park(reason: 'children' | 'dependencies'): void {
    this.config.segment?.park(reason)
  }

  /** Starts an idle agent once its dependencies completed (`Settlement`). */
  startWhenReady(entry: AgentEntry): void {
    this.settlement.startWhenReady(entry)
  }

  armTimeout(entry: AgentEntry, deadline: number): void {
    this.settlement.armTimeout(entry, deadline)
  }

  /**
   * Creates the run record and the root agent, then starts it (unless `start` is false: a host
   * will). A run id the caller chose is refused when the store already holds it: nothing is lost.
   */
  async begin(agentName: string, task: string, start = true, chosenId = false): Promise<void> {
    try {
      if (chosenId && (await this.isStored())) {
        throw new InvalidInputError(
          `run ${this.runId} already exists in the store: resume it, or start with another id`,
        )
      }
      const now = Date.now()
      this.runRecord = {
        version: 1,
        id: this.runId,
        agent: agentName,
        task,
        rootAgentId: agentName,
        status: 'running',
        createdAt: now,
        updatedAt: now,
      }
      await this.config.store.saveRun(this.runRecord)
      this.emitRun({ type: 'run.started', agent: agentName, task, rootAgentId: agentName })
      await this.startRoot(agentName, task, start)
    } catch (error) {
      this.abort(error)
      throw error
    }
  }

  private async isStored(): Promise<boolean> {
    try {
      return (await readRunRecord(this.config.store, this.runId)) !== undefined
    } catch {
      // An unreadable record still takes the id.
      return true
    }
  }

  private async startRoot(agentName: string, task: string, start = true): Promise<void> {
    const definition = this.agents.definition(agentName)
    const root = this.createAgent({
      id: agentName,
      definition,
      task,
      parentId: null,
      depth: 0,
      priority: definition.priority ?? 0,
      timeoutMs: this.agents.limitsFor(definition).timeoutMs,
    })
    await this.writer.written(root)
    if (start) this.settlement.startWhenReady(root)
  }

  /** Rebuilds every agent's actor from its record: in-flight model calls, tools and waits run again. */
  async restore(stored: StoredRun): Promise<void> {
    this.runRecord = stored.run
    const entries = stored.agents.map((record) => this.restoreAgent(record))
    if (stored.run.status === 'running' && stored.run.detachedAt !== undefined) {
      // Stored before anything runs again: after a crash, this segment's time must not count as stopped.
      this.runRecord = resumedRecord(stored.run, Date.now())
      await this.config.store.saveRun(this.runRecord)
    }
    // A crash between saving the run and its root agent leaves no root record: start the root again.
    if (!this.registry.has(stored.run.rootAgentId) && stored.run.status === 'running') {
      this.emitRun({ type: 'run.resumed', agents: 0 })
      await this.startRoot(stored.run.agent, stored.run.task)
      return
    }
    if (!this.registry.has(stored.run.rootAgentId)) {
      throw new SnapshotError(
        `run ${this.runId}`,
        `root agent "${stored.run.rootAgentId}" has no record`,
        'rootAgentId',
      )
    }
    for (const entry of entries) this.budget.book(tokensOf(entry.context))
    this.emitRun({ type: 'run.resumed', agents: entries.length })
    if (stored.run.status !== 'running') return this.settleFromRecord(stored.run)
    this.settlement.endOrphans(entries)
    for (const entry of entries) this.runEffect(entry)
    for (const entry of entries) {
      if (entry.settled) continue
      if (entry.status === 'idle') this.settlement.startWhenReady(entry)
      else if (entry.context.deadline !== null) this.settlement.armTimeout(entry, entry.context.deadline)
    }
    const root = this.registry.get(stored.run.rootAgentId)!
    if (root.settled) this.runEnded = this.endRun(root)
  }

  /** Takes a stored run record as this run's own (a segment runs one agent of it). */
  adoptRecord(record: RunRecord): void {
    this.runRecord = record
  }

  /** Starts sub-agents for `parent` (`launchChildren`). */
  launch(parent: AgentEntry, action: LaunchAction, signal: AbortSignal): Promise<LaunchOutcome> {
    return launchChildren(this.launchHost, parent, action, signal)
  }

  private get launchHost(): LaunchHost {
    return {
      agents: this.agents,
      onCycle: this.config.onCycle,
      segment: this.config.segment,
      cancelReason: () => this.cancelReason,
      written: (entry) => this.writer.written(entry),
      emitAgent: (context, event) => this.emitAgent(context, event),
      failAgent: (entry, error) => this.failAgent(entry, error),
      startWhenReady: (entry) => this.settlement.startWhenReady(entry),
    }
  }

  /** Ends every unsettled agent; the run settles as cancelled. */
  cancel(reason = 'cancelled by the caller'): void {
    if (this.isSettled || this.cancelReason !== undefined) return
    this.cancelReason = reason
    this.actor.send({ type: 'CANCEL', reason })
    // One error for all: each agent keeps its plain description, and a stack costs microseconds.
    const cancelled = new CancelledError(reason)
    for (const entry of this.registry.values()) this.failAgent(entry, cancelled)
  }

  /** Ends an agent run here as failed, wherever it is (cancel, timeout, an effect that threw). */
  failAgent(entry: AgentEntry, error: unknown): void {
    if (entry.settled || entry.mode !== 'local') return
    this.send(entry, failEvent(error))
  }

  /** Delivers a message into the agent's next model turn, whatever state it is in. */
  deliverMessage(entry: AgentEntry, from: string, text: string): void {
    this.send(entry, { type: 'MESSAGE', from, text })
    this.emitAgent(entry.context, { type: 'agent.message', from, text })
  }

  /** Sends an event to an agent's actor; one that was let go of takes none. */
  send(entry: AgentEntry, event: AgentMachineEvent): void {
    if (entry.mode === 'released' || entry.settled) return
    entry.actor.send(event)
  }

  emitAgent(context: AgentContext, event: AgentEventInput): void {
    if (!this.config.bus.hasListeners) return
    this.config.bus.emit({
      ...event,
      runId: this.runId,
      agentId: context.agentId,
      agentName: context.name,
      depth: context.depth,
      at: Date.now(),
      elapsedMs: this.elapsedMs(),
    } as never)
  }

  emitRun(event: RunEventInput): void {
    if (!this.config.bus.hasListeners) return
    this.config.bus.emit({
      ...event,
      runId: this.runId,
      at: Date.now(),
      elapsedMs: this.elapsedMs(),
    } as never)
  }

  /** The whole run as plain data. */
  async snapshot(): Promise<StoredRun> {
    if (!this.runRecord) throw new CohortError('NOT_STARTED', `run ${this.runId} has not started yet`)
    const agents: AgentRecord[] = []
    for (const entry of this.registry.values()) agents.push(toAgentRecord(entry))
    return structuredClone({ run: this.runRecord, agents })
  }

  /** Makes a new agent's actor, idle: `Settlement.startWhenReady` starts it. */
  createAgent(agent: NewAgent): AgentEntry {
    return this.agents.create(agent)
  }

  /** The agent's actor, made again from its stored record. */
  restoreAgent(record: AgentRecord, mode: AgentEntry['mode'] = 'local'): AgentEntry {
    return this.agents.restore(record, mode)
  }

  restoreRemote(ids: readonly string[]): Promise<number> {
    return this.agents.restoreRemote(ids)
  }

  /** After each change of an agent's state: write it, then act on it (`durability`). */
  private changed(entry: AgentEntry, snapshot: AgentSnapshot): void {
    if (snapshot === entry.seen || entry.mode !== 'local') return
    entry.seen = snapshot
    // An agent that ended (a timeout, a cancel) stops what it was doing at once, stored or not.
    if (snapshot.status === 'done') this.stopEffect(entry, () => endedReason(snapshot.context))
    if (this.config.durability === 'async') {
      this.writer.schedule(entry)
      this.react(entry)
      entry.onChange?.()
      return
    }
    this.writer.schedule(entry, () => this.stored(entry))
  }

  /** A write of the agent finished: what its stored state calls for may start. */
  private stored(entry: AgentEntry): void {
    const written = entry.writing
    if (written === entry.stored) return
    entry.stored = written
    // A later change is not in the store yet: its own write will act on it.
    if (written !== entry.actor.getSnapshot()) return
    this.react(entry)
    entry.onChange?.()
  }

  private react(entry: AgentEntry): void {
    if (entry.mode !== 'local') return
    if (entry.settled) this.settlement.settle(entry)
    else this.runEffect(entry)
  }

  /**
   * Starts the effect the agent's state calls for, unless one runs: `running.thinking` → a model
   * call, `running.acting` → its next action, `suspended.children` → waiting for them. The
   * outcome goes back to the agent's actor as an event.
   */
  runEffect(entry: AgentEntry): void {
    if (entry.effect !== 0 || entry.mode !== 'local') return
    const snapshot = entry.actor.getSnapshot()
    if (snapshot.status !== 'active') return
    const { context } = snapshot
    const maxRepairs = entry.limits.maxRepairs
    const controller = new AbortController()
    const { signal } = controller
    let outcome: Promise<AgentMachineEvent>
    if (snapshot.matches({ running: 'thinking' })) {
      outcome = this.services
        .think(entry, signal)
        .then((reply) => ({ type: 'REPLIED', outcome: reply, maxRepairs }))
    } else if (snapshot.matches({ running: 'acting' }) && context.pending[0]) {
      outcome = this.services
        .act(entry, context.pending[0], signal)
        .then((acted) => ({ type: 'ACTED', outcome: acted, maxRepairs }))
    } else if (snapshot.matches({ suspended: 'children' })) {
      outcome = this.services
        .awaitChildren(entry, context.waitingOn ?? [], signal)
        .then((group) => ({ type: 'CHILDREN_SETTLED', group }))
    } else return
    const token = ++this.effects
    entry.effect = token
    entry.controller = controller
    outcome.then(
      (event) => {
        // An aborted effect (the agent settled or stopped) has nobody left to tell.
        if (entry.effect !== token) return
        entry.effect = 0
        entry.controller = undefined
        this.send(entry, event)
      },
      (error: unknown) => {
        if (entry.effect !== token) return
        entry.effect = 0
        entry.controller = undefined
        this.failAgent(entry, error)
      },
    )
  }

  /** Aborts the agent's running effect (cancel, timeout, a segment's end). */
  stopEffect(entry: AgentEntry, reason: () => unknown = () => new CancelledError('stopped')): void {
    // Made only when an effect runs: an error's stack costs more than the rest of a settlement.
    if (entry.effect !== 0) entry.controller?.abort(reason())
    entry.effect = 0
    entry.controller = undefined
  }

  /** Lets go of the agent where it is: it takes no more events, and nothing of it is written. */
  release(entry: AgentEntry): void {
    if (entry.mode === 'released') return
    entry.mode = 'released'
    clearTimeout(entry.timer)
    this.stopEffect(entry)
    if (!entry.settled) this.actor.send({ type: 'STOP_AGENT', agent: entry.actor })
  }

  /** Settles the run once its root agent has settled. */
  async endRun(root: AgentEntry): Promise<void> {
    if (this.ending) return
    this.ending = true
    const finished = new CancelledError('the run finished')
    for (const entry of this.registry.values()) this.failAgent(entry, finished)
    const { context } = root
    let status: RunStatus = root.status === 'completed' ? 'completed' : 'failed'
    if (status === 'failed' && this.cancelReason !== undefined) status = 'cancelled'
    try {
      await this.writer.flush()
      await this.finishRecord(status, context.result, context.error)
    } catch (error) {
      return this.failRun(error)
    }
    this.settleFromRecord(this.runRecord!)
  }

  private async finishRecord(
    status: RunStatus,
    result: unknown,
    error: ErrorInfo | undefined,
  ): Promise<void> {
    const record: RunRecord = { ...this.runRecord!, status, updatedAt: Date.now() }
    if (status === 'completed') record.result = result
    else if (error) record.error = error
    await this.config.store.saveRun(record)
    this.runRecord = record
  }

  private settleFromRecord(record: RunRecord): void {
    this.runRecord = record
    if (record.status === 'completed') {
      this.actor.send({ type: 'SETTLED', status: 'completed', result: record.result })
      this.emitRun({ type: 'run.completed', result: record.result })
      this.resolveResult(record.result)
    } else if (record.status === 'cancelled') {
      const reason = record.error?.message ?? 'cancelled'
      this.actor.send({
        type: 'SETTLED',
        status: 'cancelled',
        error: toErrorInfo(new CancelledError(reason)),
      })
      this.emitRun({ type: 'run.cancelled', reason })
      this.rejectResult(new CancelledError(reason))
    } else {
      const error = record.error ?? toErrorInfo(new Error('run failed'))
      this.actor.send({ type: 'SETTLED', status: 'failed', error })
      this.emitRun({ type: 'run.failed', error })
      this.rejectResult(fromErrorInfo(error, record.rootAgentId))
    }
    this.config.bus.close()
  }

  /**
   * Stops every agent where it is: the store keeps the last real state, and a later `resume`
   * continues from it (a server shutting down). The result rejects with DETACHED.
   */
  async detach(): Promise<void> {
    if (this.isSettled || this.ending) return
    this.ending = true
    const stoppedAt = Date.now()
    const entries = [...this.registry.values()]
    // Marked first, so that no effect starts; their last changes are written, then they stop.
    for (const entry of entries) {
      clearTimeout(entry.timer)
      this.stopEffect(entry)
    }
    for (const entry of entries) entry.mode = entry.mode === 'local' ? 'released' : entry.mode
    try {
      await this.writer.flush()
      // When it stopped, so that the time until a resume is not counted as running (metrics).
      if (this.runRecord?.status === 'running') {
        this.runRecord = detachedRecord(this.runRecord, stoppedAt)
        await this.config.store.saveRun(this.runRecord)
      }
    } finally {
      for (const entry of entries)
        if (!entry.settled) this.actor.send({ type: 'STOP_AGENT', agent: entry.actor })
      this.actor.send({ type: 'DETACH' })
      this.rejectResult(new CohortError('DETACHED', `run ${this.runId} was detached; resume it to continue`))
      this.config.bus.close()
    }
  }

  /** A failure of the runtime itself (a store that cannot write): stop every agent and fail the run. */
  private abort(error: unknown): void {
    if (this.isSettled) return
    this.ending = true
    for (const entry of this.registry.values()) this.release(entry)
    this.failRun(error)
  }

  private failRun(error: unknown): void {
    // The stored run stays as it was (status running, last good agent records): it can be resumed later.
    const info = toErrorInfo(error)
    if (this.runRecord) this.runRecord = { ...this.runRecord, status: 'failed', error: info }
    this.actor.send({ type: 'ABORT', error: info })
    this.emitRun({ type: 'run.failed', error: info })
    this.rejectResult(error instanceof CohortError ? error : new AgentFailedError('(runtime)', info.message))
    this.config.bus.close()
  }
}
