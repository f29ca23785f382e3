import { createActor } from 'xstate'
import { type AgentMachineEvent, type AgentSnapshot, failEvent } from '../agent/agent-machine.js'
import type { AgentContext } from '../agent/context.js'
import type { AgentDefinition } from '../agent/define-agent.js'
import { CancelledError, CohortError, fromErrorInfo } from '../errors.js'
import type { EventBus } from '../events/event-bus.js'
import type { AgentEventInput, RunEventInput } from '../events/types.js'
import type { ChatModel } from '../models/types.js'
import { AgentWriter } from '../persistence/agent-writer.js'
import { type RunReads, runReads } from '../persistence/read.js'
import type { AgentRecord, RunRecord, RunStore, StoredRun } from '../persistence/records.js'
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
import type { ContinueTarget } from './continuation.js'
import type { EffectHost } from './effect-host.js'
import { Effects } from './effects.js'
import { type LaunchHost, type LaunchOutcome, launchChildren } from './launch.js'
import { BusyTracker } from './metrics.js'
import { AgentRegistry, type NewAgent } from './registry.js'
import { abortRun, cancelRun, detachRun, type EndHost, endRun } from './run-end.js'
import { RunEvents } from './run-events.js'
import { type RunActor, runMachine } from './run-machine.js'
import { RunOutcome } from './run-outcome.js'
import { beginRun, restoreRun, type StartHost } from './run-start.js'
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
export class Orchestrator implements EffectHost, StartHost, EndHost {
  /** The run's agents by id (`AgentRegistry`). */
  readonly registry: ReadonlyMap<string, AgentEntry>
  readonly agents: AgentRegistry
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
  readonly settlement: Settlement
  /** The run's record and its result. */
  readonly outcome: RunOutcome
  private readonly events: RunEvents
  /** Set once the run began to end (its root settled, a detach, an abort): nothing new starts. */
  ending = false
  /** Set once a detach began (`detachRun`). */
  detaching = false
  cancelReason: string | undefined
  /** The run's creation (`beginSoon`) while it is under way: a detach waits for it. */
  beginning: Promise<void> | undefined
  /** Its store's records as it reads them (a segment, an answer, a budget shared by workers). */
  readonly reads: RunReads

  constructor(readonly config: OrchestratorConfig) {
    this.events = new RunEvents(config.bus, config.runId)
    this.reads = runReads(config.store, config.runId, config.storeTimeoutMs)
    this.budget = new TokenBudget(config.limits.maxRunTokens, `run ${config.runId}`, {
      runId: config.runId,
      spent: () => storedTokens(this.reads),
    })
    this.actor = createActor(runMachine, {
      id: `run ${config.runId}`,
      input: { runId: config.runId },
      ...(config.inspect !== undefined && { inspect: config.inspect }),
    })
    this.actor.start()
    this.agents = new AgentRegistry(config.runId, this.actor, config.definitions, config.limits, this.reads, {
      changed: (entry, snapshot) => this.changed(entry, snapshot),
      emitted: (entry, event) => this.agentEmitted(entry, event),
      failed: (error) => this.abort(error),
    })
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
  beginSoon(agentName: string, task: string, chosenId: boolean, continueFrom?: ContinueTarget): void {
    this.beginning = nextTurn()
      .then(() => this.begin(agentName, task, true, chosenId, continueFrom))
      .catch(() => {})
  }

  /** Creates the run record and the root agent, then starts it unless `start` is false (`beginRun`). */
  begin(
    agentName: string,
    task: string,
    start = true,
    chosenId = false,
    continueFrom?: ContinueTarget,
  ): Promise<void> {
    return beginRun(this, agentName, task, start, chosenId, continueFrom)
  }

  /** Rebuilds every agent's actor from its record, then goes on (`restoreRun`). */
  restore(stored: StoredRun): Promise<void> {
    return restoreRun(this, stored)
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
    cancelRun(this, reason)
  }

  /** Ends an agent run here as failed, wherever it is (cancel, timeout, an effect that threw). */
  failAgent(entry: AgentEntry, error: unknown): void {
    if (entry.settled || entry.mode !== 'local') return
    const busyMs = entry.busySince === undefined ? 0 : performance.now() - entry.busySince
    this.send(entry, failEvent(error, busyMs))
  }

  get open(): boolean {
    return !this.ending && this.cancelReason === undefined
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

  /**
   * Delivers a message into the agent's next model turn, whatever state it is in. One whose `id`
   * the agent already received was sent again by a sender resumed after a crash: it is dropped.
   */
  deliverMessage(entry: AgentEntry, from: string, text: string, id?: string): void {
    if (id !== undefined && entry.context.receivedMessages.includes(id)) return
    this.send(entry, id === undefined ? { type: 'MESSAGE', from, text } : { type: 'MESSAGE', from, text, id })
    this.emitAgent(entry.context, { type: 'agent.message', from, text })
  }

  /** Sends an event to an agent's actor; one that was let go of takes none. */
  send(entry: AgentEntry, event: AgentMachineEvent): void {
    if (entry.mode === 'released' || entry.settled) return
    entry.actor.send(event)
  }

  /**
   * An event of an agent's machine. With `sync` durability, that it completed or failed is told
   * once its record says so (`stored`): a listener acting on a result a crash would lose would act
   * on one the resumed run does not end with.
   */
  private agentEmitted(entry: AgentEntry, event: AgentEventInput): void {
    const ending = event.type === 'agent.completed' || event.type === 'agent.failed'
    if (ending && this.config.durability === 'sync' && entry.mode === 'local') entry.endEvent = event
    else this.emitAgent(entry.context, event)
  }

  emitAgent(context: AgentContext, event: AgentEventInput): void {
    this.events.agent(context, event)
  }

  emitUnlessStopped(signal: AbortSignal, context: AgentContext, event: AgentEventInput): void {
    if (!signal.aborted) this.emitAgent(context, event)
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
    const { endEvent } = entry
    if (endEvent) {
      entry.endEvent = undefined
      this.emitAgent(entry.context, endEvent)
    }
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

  /** Settles the run once its root agent has settled (`endRun` in run-end.ts). */
  endRun(root: AgentEntry): Promise<void> {
    return endRun(this, root)
  }

  /** Stops every agent where it is, for a later `resume` (`detachRun`); the result rejects with DETACHED. */
  detach(): Promise<void> {
    return detachRun(this)
  }

  /** A failure of the runtime itself: every agent stops and the run fails here (`abortRun`). */
  abort(error: unknown): void {
    abortRun(this, error)
  }
}

/** The tokens a run's stored agents used: where a budget shared by workers starts counting. */
async function storedTokens(reads: RunReads): Promise<number> {
  const stored = await reads.wholeRun()
  let tokens = 0
  for (const agent of stored?.agents ?? []) tokens += tokensOf(agent.snapshot.context)
  return tokens
}
