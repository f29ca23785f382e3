import { createActor } from 'xstate'
import { type AgentMachineEvent, type AgentSnapshot, failEvent } from '../agent/agent-machine.js'
import type { AgentContext } from '../agent/context.js'
import type { AgentDefinition } from '../agent/define-agent.js'
import { CancelledError, CohortError, fromErrorInfo, InvalidInputError, SnapshotError } from '../errors.js'
import type { EventBus } from '../events/event-bus.js'
import type { AgentEventInput, RunEventInput } from '../events/types.js'
import type { ChatModel } from '../models/types.js'
import { AgentWriter } from '../persistence/agent-writer.js'
import { readRunRecord } from '../persistence/read.js'
import type { AgentRecord, RunRecord, RunStatus, RunStore, StoredRun } from '../persistence/records.js'
import type { ActionOf } from '../protocol/actions.js'
import type { Redactor } from '../protocol/redact.js'
import type { Scheduler } from '../scheduler/scheduler.js'
import { TokenBudget } from '../scheduler/token-budget.js'
import { nextTurn } from '../thenable.js'
import type { Workspaces } from '../workspaces/workspaces.js'
import { type AgentEntry, toAgentRecord, tokensOf } from './agent-entry.js'
import { AgentKinds } from './agent-kinds.js'
import { createAgentServices } from './agent-services.js'
import type { OrchestratorConfig } from './config.js'
import { deadlinesAfterStop } from './deadlines.js'
import type { EffectHost } from './effect-host.js'
import { Effects } from './effects.js'
import { type LaunchHost, type LaunchOutcome, launchChildren } from './launch.js'
import { BusyTracker, detachedRecord, resumedRecord } from './metrics.js'
import { AgentRegistry, type NewAgent } from './registry.js'
import { RunEvents } from './run-events.js'
import { type RunActor, runMachine } from './run-machine.js'
import { RunOutcome } from './run-outcome.js'
import { Settlement } from './settlement.js'

function endedReason(context: AgentContext): unknown {
  return context.error ? fromErrorInfo(context.error) : new CancelledError('settled')
}

type LaunchAction = ActionOf<'launch_subagents'>

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
  readonly busy = new BusyTracker()
  readonly kinds = new AgentKinds()
  /** The run's actor: its snapshot says where the run is; every agent's actor is its child. */
  readonly actor: RunActor
  readonly writer: AgentWriter<AgentEntry>
  /** Tokens the run used (`maxRunTokens`), and those reserved by its calls in flight. */
  readonly budget: TokenBudget
  /** Set once the root agent settled: resolves when the run record is final. */
  runEnded: Promise<void> | undefined
  private readonly effects: Effects
  private readonly settlement: Settlement
  /** The run's record and its result. */
  private readonly outcome: RunOutcome
  private readonly events: RunEvents
  private ending = false
  cancelReason: string | undefined
  /** The run's creation (`beginSoon`) while it is under way: a detach waits for it. */
  private beginning: Promise<void> | undefined

  constructor(readonly config: OrchestratorConfig) {
    this.events = new RunEvents(config.bus, config.runId)
    this.budget = new TokenBudget(config.limits.maxRunTokens, `run ${config.runId}`, {
      runId: config.runId,
      spent: () => storedTokens(config.store, config.runId),
    })
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
    this.effects = new Effects(createAgentServices(this), this, config.scheduler.agents)
    this.settlement = new Settlement(this)
    this.outcome = new RunOutcome(this)
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
      () => config.claims?.check(),
    )
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
  get store(): RunStore {
    return this.config.store
  }
  /** Resolves with the root agent's result when the run completes; rejects when it does not. */
  get result(): Promise<unknown> {
    return this.outcome.result
  }
  /** The run ended in this process, not before it was resumed here. */
  get endedHere(): boolean {
    return this.outcome.endedHere
  }

  get record(): RunRecord | undefined {
    return this.outcome.record
  }
  get isSettled(): boolean {
    return this.outcome.isSettled
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
   * `begin`, on the next turn of the event loop so that the caller can subscribe before the first
   * event. A cancel or a detach in between is kept: the root is stored, then ended or left idle.
   */
  beginSoon(agentName: string, task: string, chosenId: boolean): void {
    this.beginning = nextTurn()
      .then(() => this.begin(agentName, task, true, chosenId))
      .catch(() => {})
  }

  /**
   * Creates the run record and the root agent, then starts it (unless `start` is false: a host
   * will). A run id the caller chose is refused when the store already holds it: nothing is lost.
   */
  async begin(agentName: string, task: string, start = true, chosenId = false): Promise<void> {
    try {
      if (start) await this.config.claims?.claim()
      if (chosenId && (await this.isStored())) {
        throw new InvalidInputError(
          `run ${this.runId} already exists in the store: resume it, or start with another id`,
        )
      }
      const now = Date.now()
      await this.outcome.keep({
        version: 1,
        id: this.runId,
        agent: agentName,
        task,
        rootAgentId: agentName,
        status: 'running',
        createdAt: now,
        updatedAt: now,
      })
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
    } catch (error) {
      // An unreadable record still takes the id; a store that cannot answer says so.
      if (error instanceof SnapshotError) return true
      throw error
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
    if (this.cancelReason !== undefined) this.failAgent(root, new CancelledError(this.cancelReason))
    else if (start && !this.ending) this.settlement.startWhenReady(root)
  }

  /**
   * Rebuilds every agent's actor from its record. What their states call for (in-flight model
   * calls, tools and waits run again) starts on the next turn of the event loop, so the caller
   * that resumed the run can subscribe to its events first.
   */
  async restore(stored: StoredRun): Promise<void> {
    // A record copied under another id would be written back, and run on, as the run it names.
    if (stored.run.id !== this.runId)
      throw new SnapshotError(
        `run ${this.runId}`,
        `the record of run "${stored.run.id}" is stored here`,
        'id',
      )
    this.outcome.adopt(stored.run)
    // Metrics count the whole run: its peak in the processes before this one too.
    this.busy.peak = Math.max(this.busy.peak, stored.run.peakParallelism ?? 0)
    const entries = stored.agents.map((record) => this.restoreAgent(record))
    // A crash between saving the run and its root agent leaves no agent record: the root starts
    // again. Children without their root are a store that lost a record.
    const rootless = entries.length === 0 && stored.run.status === 'running'
    if (!rootless && !this.registry.has(stored.run.rootAgentId)) {
      throw new SnapshotError(
        `run ${this.runId}`,
        `root agent "${stored.run.rootAgentId}" has no record`,
        'rootAgentId',
      )
    }
    // When it stopped: at its detach, or after its last stored step (a crash).
    const stoppedAt =
      stored.run.detachedAt ??
      Math.max(stored.run.updatedAt, ...stored.agents.map((agent) => agent.updatedAt))
    // A running agent's effect in flight at a crash began after its last stored step, and runs again.
    const storedAt = new Map(stored.agents.map((agent) => [agent.id, agent.updatedAt]))
    const lostOf = (entry: AgentEntry) =>
      entry.status === 'running' ? stoppedAt - (storedAt.get(entry.id) ?? stoppedAt) : 0
    if (stored.run.status === 'running') {
      // The time stopped is not wall time, after a crash as after a detach. Stored before anything
      // runs again: after a later crash, this segment's time must not count as stopped.
      await this.outcome.keep(resumedRecord({ ...stored.run, detachedAt: stoppedAt }, Date.now()))
    }
    this.beginning = nextTurn()
      .then(() =>
        rootless ? this.restartRoot(stored.run) : this.proceed(stored.run, entries, stoppedAt, lostOf),
      )
      .catch((error: unknown) => this.abort(error))
  }

  private async restartRoot(run: RunRecord): Promise<void> {
    if (this.ending) return
    this.emitRun({ type: 'run.resumed', agents: 0 })
    await this.startRoot(run.agent, run.task)
  }

  /** A restored run goes on, unless it was detached or cancelled in between. */
  private proceed(
    run: RunRecord,
    entries: AgentEntry[],
    stoppedAt: number,
    lostOf: (entry: AgentEntry) => number,
  ): void {
    if (this.ending) return
    for (const entry of entries) this.budget.book(tokensOf(entry.context))
    this.emitRun({ type: 'run.resumed', agents: entries.length })
    if (run.status !== 'running') {
      this.ending = true
      void this.letGo().then(() => this.outcome.settle(run, true))
      return
    }
    this.settlement.endOrphans(entries)
    const stoppedFor = Math.max(0, Date.now() - stoppedAt)
    for (const [entry, deadline] of deadlinesAfterStop(entries, this.registry, stoppedFor, lostOf))
      this.send(entry, { type: 'DEADLINE', deadline })
    for (const entry of entries) this.effects.run(entry)
    for (const entry of entries) {
      if (entry.settled) continue
      if (entry.status === 'idle') this.settlement.startWhenReady(entry)
      else if (entry.context.deadline !== null) this.settlement.armTimeout(entry, entry.context.deadline)
    }
    const root = this.registry.get(run.rootAgentId)!
    if (root.settled) this.runEnded = this.endRun(root)
  }

  /** Takes a stored run record as this run's own (a segment runs one agent of it). */
  adoptRecord(record: RunRecord): void {
    this.outcome.adopt(record)
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
    const busyMs = entry.busySince === undefined ? 0 : performance.now() - entry.busySince
    this.send(entry, failEvent(error, busyMs))
  }

  stopClock(entry: AgentEntry): void {
    clearTimeout(entry.timer)
  }

  restartClock(entry: AgentEntry, waitedMs: number): void {
    const { deadline } = entry.context
    if (deadline === null || entry.settled || entry.mode !== 'local') return
    this.send(entry, { type: 'DEADLINE', deadline: deadline + waitedMs })
    this.settlement.armTimeout(entry, deadline + waitedMs)
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
    this.events.agent(context, event)
  }

  emitRun(event: RunEventInput): void {
    this.events.run(event)
  }

  /** The whole run as plain data. */
  async snapshot(): Promise<StoredRun> {
    // A run started a moment ago is stored first (its record and its root).
    await this.beginning
    const run = this.outcome.record
    if (!run) throw new CohortError('NOT_STARTED', `run ${this.runId} has not started yet`)
    const agents: AgentRecord[] = []
    for (const entry of this.registry.values()) agents.push(toAgentRecord(entry))
    return structuredClone({ run, agents })
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

  /** Starts the effect the agent's state calls for, unless one runs (`Effects`). */
  runEffect(entry: AgentEntry): void {
    this.effects.run(entry)
  }

  /** Aborts the agent's running effect (cancel, timeout, a segment's end). */
  stopEffect(entry: AgentEntry, reason?: () => unknown): void {
    this.effects.stop(entry, reason)
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
    let record: RunRecord
    try {
      await this.writer.flush()
      record = await this.outcome.finish(status, context.result, context.error, this.busy.peak)
    } catch (error) {
      void this.letGo()
      return this.outcome.fail(error)
    }
    await this.letGo()
    this.outcome.settle(record)
  }

  /**
   * Stops every agent where it is: the store keeps the last real state, and a later `resume`
   * continues from it (a server shutting down). The result rejects with DETACHED.
   */
  async detach(): Promise<void> {
    if (this.isSettled || this.ending) return
    this.ending = true
    // A run started a moment ago is stored first, so that a resume finds it.
    await this.beginning
    if (this.isSettled) return
    const stoppedAt = Date.now()
    const entries = [...this.registry.values()]
    const now = performance.now()
    const cutOff = (entry: AgentEntry) =>
      entry.busySince !== undefined && entry.mode === 'local' && !entry.settled ? now - entry.busySince : 0
    const deadlines = deadlinesAfterStop(entries, this.registry, 0, cutOff)
    // Marked first, so that no effect starts; their last changes are written, then they stop.
    for (const entry of entries) {
      clearTimeout(entry.timer)
      // Counted while its effect still runs, so that the change starts nothing.
      const busyMs = cutOff(entry)
      if (busyMs > 0) this.send(entry, { type: 'CUT_OFF', busyMs })
      const deadline = deadlines.get(entry)
      if (deadline !== undefined) this.send(entry, { type: 'DEADLINE', deadline })
      this.stopEffect(entry)
    }
    for (const entry of entries) entry.mode = entry.mode === 'local' ? 'released' : entry.mode
    try {
      await this.writer.flush()
      // When it stopped, so that the time until a resume is not counted as running (metrics).
      const record = this.outcome.record
      if (record?.status === 'running')
        await this.outcome.keep(detachedRecord(record, stoppedAt, this.busy.peak))
    } finally {
      for (const entry of entries)
        if (!entry.settled) this.actor.send({ type: 'STOP_AGENT', agent: entry.actor })
      await this.letGo()
      this.outcome.detached()
    }
  }

  /** Lets go of this process's claim on the run, before whoever awaits its end hears of it. */
  private letGo(): Promise<void> {
    return this.config.claims?.release().catch(() => {}) ?? Promise.resolve()
  }

  /**
   * A failure of the runtime itself (a store that cannot write, a claim another process took):
   * stop every agent and fail the run here; the store keeps what it holds.
   */
  abort(error: unknown): void {
    if (this.isSettled) return
    this.ending = true
    for (const entry of this.registry.values()) this.release(entry)
    // Nothing more of it is written: another process may hold it now.
    this.writer.stop(error)
    void this.letGo()
    this.outcome.fail(error)
    this.config.segment?.failed(error)
  }
}

/** The tokens a run's stored agents used: where a budget shared by workers starts counting. */
async function storedTokens(store: RunStore, runId: string): Promise<number> {
  const stored = await store.loadRun(runId)
  let tokens = 0
  for (const agent of stored?.agents ?? []) tokens += tokensOf(agent.snapshot.context)
  return tokens
}
