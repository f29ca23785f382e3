import {
  type ActOutcome,
  afterAct,
  afterSettled,
  afterThought,
  fail,
  type SettledGroup,
  type Step,
  started,
  type ThinkOutcome,
  withMessage,
} from '../agent/agent-loop.js'
import { AgentLifecycle, type AgentState, type LifecycleEvent } from '../agent/agent-machine.js'
import { type AgentContext, emptyList, initialContext } from '../agent/context.js'
import type { AgentDefinition } from '../agent/define-agent.js'
import { type RunLimits, resolveLimits } from '../agent/limits.js'
import {
  AgentFailedError,
  CancelledError,
  CohortError,
  type ErrorInfo,
  fromErrorInfo,
  InvalidInputError,
  SnapshotError,
  TimeoutError,
  toErrorInfo,
} from '../errors.js'
import type { EventBus } from '../events/event-bus.js'
import type { AgentEventInput, RunEventInput } from '../events/types.js'
import type { ChatMessage, ChatModel } from '../models/types.js'
import { AgentWriter } from '../persistence/agent-writer.js'
import { readAgentRecord, readRunRecord } from '../persistence/read.js'
import type { AgentRecord, RunRecord, RunStatus, RunStore, StoredRun } from '../persistence/records.js'
import type { LaunchSpec } from '../protocol/actions.js'
import { systemPrompt } from '../protocol/prompt.js'
import type { Redactor } from '../protocol/redact.js'
import type { Scheduler } from '../scheduler/scheduler.js'
import { TokenBudget } from '../scheduler/token-budget.js'
import { AbortSwitch } from '../tools/abort-switch.js'
import type { Workspaces } from '../workspaces/workspaces.js'
import { type AgentEntry, childResult, suspendedOn, toAgentRecord } from './agent-entry.js'
import { type AgentServices, createAgentServices } from './agent-services.js'
import { type LaunchOutcome, planLaunch } from './launch.js'
import { BusyTracker } from './metrics.js'

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
  /** Set when this orchestrator runs one segment of one agent for a distributed host. */
  segment?: SegmentHooks
}

/** What a distributed host (a BullMQ worker) provides to run one agent's segment. */
export interface SegmentHooks {
  /** Agents created here that must run: the host schedules a segment for each. */
  enqueue(agentIds: string[]): Promise<void>
  /** The agent cannot go on here: it waits on agents that run elsewhere. */
  park(reason: 'children' | 'dependencies'): void
}

interface NewAgent {
  id: string
  definition: AgentDefinition
  task: string
  parentId: string | null
  depth: number
  dependsOn?: string[]
  priority?: number
  timeoutMs?: number | null
  fallback?: { value: unknown } | null
}

/**
 * One per run. Owns the registry of agents (a Map, never a machine's context), spawns agents
 * on launch, starts dependents when their dependencies are done, routes settlement to waiting
 * parents, enforces limits and timeouts, and writes each changed agent to the store.
 */
export class Orchestrator {
  readonly registry = new Map<string, AgentEntry>()
  readonly result: Promise<unknown>
  readonly busy = new BusyTracker()
  /** Tokens the run used (`maxRunTokens`), and those reserved by its calls in flight. */
  readonly budget: TokenBudget
  /** Effects started so far: each gets the next number as its token. */
  private effects = 0
  /** Set once the root agent settled: resolves when the run record is final. */
  runEnded: Promise<void> | undefined
  private readonly lifecycle: AgentLifecycle
  private readonly services: AgentServices
  readonly writer: AgentWriter<AgentEntry>
  private readonly limitsByAgent = new Map<string, RunLimits>()
  private readonly systemMessages = new Map<string, ChatMessage>()
  private readonly clockStart = performance.now()
  private runRecord: RunRecord | undefined
  private resolveResult!: (value: unknown) => void
  private rejectResult!: (error: unknown) => void
  private ending = false
  private cancelReason: string | undefined

  constructor(readonly config: OrchestratorConfig) {
    this.budget = new TokenBudget(config.limits.maxRunTokens, `run ${config.runId}`)
    this.services = createAgentServices(this)
    this.lifecycle = new AgentLifecycle((context, event) => this.emitAgent(context, event))
    this.writer = new AgentWriter(
      config.store,
      config.runId,
      config.storeTimeoutMs,
      (error) => this.abort(error),
      toAgentRecord,
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

  get record(): RunRecord | undefined {
    return this.runRecord
  }

  get isSettled(): boolean {
    return this.runRecord !== undefined && this.runRecord.status !== 'running'
  }

  elapsedMs(): number {
    return Math.round(performance.now() - this.clockStart)
  }

  limitsFor(definition: AgentDefinition): RunLimits {
    let limits = this.limitsByAgent.get(definition.name)
    if (!limits) {
      limits = resolveLimits(this.config.limits, definition.limits)
      this.limitsByAgent.set(definition.name, limits)
    }
    return limits
  }

  /**
   * One system message object per kind, shared by its agents: it is most of a small agent's
   * memory, and the codec keeps one encoding of it instead of one per agent.
   */
  private systemMessageFor(definition: AgentDefinition): ChatMessage {
    let message = this.systemMessages.get(definition.name)
    if (message === undefined) {
      message = { role: 'system', content: systemPrompt(definition, this.config.definitions) }
      this.systemMessages.set(definition.name, message)
    }
    return message
  }

  modelFor(definition: AgentDefinition): ChatModel {
    const model = definition.model ?? this.config.model
    if (!model)
      throw new CohortError('NO_MODEL', `agent "${definition.name}" has no model and the runtime has none`)
    return model
  }

  entry(agentId: string): AgentEntry {
    const entry = this.registry.get(agentId)
    if (!entry) throw new CohortError('UNKNOWN_AGENT', `agent "${agentId}" is not in run ${this.runId}`)
    return entry
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
      const rootAgentId = agentName
      this.runRecord = {
        version: 1,
        id: this.runId,
        agent: agentName,
        task,
        rootAgentId,
        status: 'running',
        createdAt: now,
        updatedAt: now,
      }
      await this.config.store.saveRun(this.runRecord)
      this.emitRun({ type: 'run.started', agent: agentName, task, rootAgentId })
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
    const definition = this.definition(agentName)
    const root = this.createAgent(
      {
        id: agentName,
        definition,
        task,
        parentId: null,
        depth: 0,
        priority: definition.priority ?? 0,
        timeoutMs: this.limitsFor(definition).timeoutMs,
      },
      start,
    )
    await this.writer.writeNow(root)
    if (start) this.activate(root)
  }

  /** Rebuilds every agent from its record: in-flight model calls, tools and waits run again. */
  async restore(stored: StoredRun): Promise<void> {
    this.runRecord = stored.run
    const entries = stored.agents.map((record) => this.restoreAgent(record))
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
    for (const entry of entries) this.subscribe(entry)
    for (const entry of entries) this.runEffect(entry)
    for (const entry of entries) {
      if (entry.settled) continue
      if (entry.state.value === 'idle') this.startWhenReady(entry)
      else if (entry.context.deadline !== null) this.armTimeout(entry, entry.context.deadline)
    }
    // Agents whose settlement was not yet seen by their parents or dependents.
    for (const entry of entries) if (entry.settled) this.cancelOrphans(entry)
    const root = this.registry.get(stored.run.rootAgentId)!
    if (root.settled) void this.endRun(root)
  }

  /** Takes a stored run record as this run's own (a segment runs one agent of it). */
  adoptRecord(record: RunRecord): void {
    this.runRecord = record
  }

  /** Starts sub-agents for `parent`. Idempotent: a launch replayed after a restore finds its children. */
  async launch(
    parent: AgentEntry,
    specs: LaunchSpec[],
    onCycle?: 'refuse' | 'sequential',
  ): Promise<LaunchOutcome> {
    const cycles = onCycle ?? this.config.onCycle
    let plan = planLaunch(parent, specs, this.registry, cycles)
    if (!plan.ok) return plan
    const segment = this.config.segment
    // A segment holds only the agents it loaded, where a restored run holds them all. A launch
    // made again after a crash (replayed, or the model asked again before its reply was stored)
    // finds its children in the store, where they may have run on; creating them again would
    // reset them. A fresh launch pays one read per child for this.
    if (segment && !plan.existing) {
      const unknown = plan.children.filter((child) => !child.exists).map((child) => child.link.id)
      if ((await this.restoreRemote(unknown)) > 0) {
        plan = planLaunch(parent, specs, this.registry, cycles)
        if (!plan.ok) return plan
      }
    }
    const links = plan.children.map((child) => child.link)
    if (plan.existing) return { ok: true, children: links }
    const context = parent.context
    for (const message of plan.warnings) this.emitAgent(context, { type: 'agent.warning', message })
    const created = plan.children.filter((child) => !child.exists)
    // Looked up before any child starts: an unknown agent throws with none of its siblings running.
    const definitions = created.map((child) => this.definition(child.link.agent))
    this.emitAgent(context, {
      type: 'agent.launched',
      children: created.map(({ link, dependsOn }) => ({
        id: link.id,
        agent: link.agent,
        task: link.task,
        dependsOn,
      })),
    })
    const waiting: AgentEntry[] = []
    const children = created.map(({ link, spec, dependsOn }, index) => {
      const definition = definitions[index]!
      // A child with nothing to wait for starts running; a segment's children start in other workers.
      const running = !segment && dependsOn.length === 0
      const child = this.createAgent(
        {
          id: link.id,
          definition,
          task: link.task,
          parentId: parent.id,
          depth: parent.depth + 1,
          dependsOn,
          priority: spec.priority ?? definition.priority ?? 0,
          timeoutMs: spec.timeout_ms ?? this.limitsFor(definition).timeoutMs,
          fallback: 'fallback' in spec ? { value: spec.fallback } : (definition.fallback ?? null),
        },
        running,
      )
      // Its first model call starts now, not after its siblings are made: the first replies come
      // back sooner, and the last one no later.
      if (running) this.activate(child)
      else waiting.push(child)
      return child
    })
    // Children are on disk before the parent records the launch, so a restore always finds them.
    if (segment) {
      // Children of a segment run in other workers: the host schedules them.
      await Promise.all(children.map((child) => this.writer.writeNow(child)))
      for (const child of children) child.remote = true
      await segment.enqueue(children.map((child) => child.id))
      return { ok: true, children: links }
    }
    // Those waiting on siblings start once every sibling exists.
    for (const child of waiting) this.activate(child)
    // Written once they started, not also before: one write per child, of its running state, at
    // the end of the tick, once their first model calls are under way.
    await Promise.all(children.map((child) => this.writer.written(child.id)))
    return { ok: true, children: links }
  }

  /** Ends every unsettled agent; the run settles as cancelled. */
  cancel(reason = 'cancelled by the caller'): void {
    if (this.isSettled || this.cancelReason !== undefined) return
    this.cancelReason = reason
    for (const entry of this.registry.values()) {
      if (!entry.settled && !entry.remote) this.failAgent(entry, new CancelledError(reason))
    }
  }

  /** Ends an agent as failed, wherever it is (cancel, timeout, an effect that threw). */
  failAgent(entry: AgentEntry, error: unknown): void {
    if (entry.settled) return
    this.send(entry, { type: 'FAIL', context: fail(entry.context, error) })
  }

  /** Delivers a message into the agent's next model turn, whatever state it is in. */
  deliverMessage(entry: AgentEntry, from: string, text: string): void {
    entry.context = withMessage(entry.context, from, text)
    this.writer.schedule(entry)
    this.emitAgent(entry.context, { type: 'agent.message', from, text })
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

  private definition(name: string): AgentDefinition {
    const definition = this.config.definitions.get(name)
    if (!definition)
      throw new CohortError('UNKNOWN_AGENT', `agent "${name}" is not registered in this runtime`)
    return definition
  }

  /**
   * Makes a new agent, idle or already running (with nothing to wait for, it skips the idle
   * state's transition); `activate` starts it.
   */
  private createAgent(agent: NewAgent, running: boolean): AgentEntry {
    let context = initialContext({
      runId: this.runId,
      agentId: agent.id,
      name: agent.definition.name,
      parentId: agent.parentId,
      depth: agent.depth,
      task: agent.task,
      systemMessage: this.systemMessageFor(agent.definition),
      dependsOn: agent.dependsOn && agent.dependsOn.length > 0 ? agent.dependsOn : emptyList(),
      priority: agent.priority ?? 0,
      timeoutMs: agent.timeoutMs ?? null,
      fallback: agent.fallback ?? null,
    })
    if (running) context = started(context, deadlineOf(context))
    const state = this.lifecycle.at(running ? 'running' : 'idle')
    return this.register(agent.id, agent.definition, state, context, agent.parentId, agent.depth, false)
  }

  /** Starts a new agent: one created running begins its loop, an idle one waits for its dependencies. */
  private activate(entry: AgentEntry): void {
    this.subscribe(entry)
    // Cancelled while its launch was starting its siblings (by a listener of one of their events).
    if (this.cancelReason !== undefined) {
      this.failAgent(entry, new CancelledError(this.cancelReason))
      return
    }
    const running = entry.state.value === 'running'
    if (running) this.emitStarted(entry.context)
    // Its first write (a launch waits for it), and a running agent's first model call.
    this.changed(entry)
    if (!running) this.startWhenReady(entry)
    else if (entry.context.deadline !== null) this.armTimeout(entry, entry.context.deadline)
  }

  private emitStarted(context: AgentContext): void {
    this.emitAgent(context, { type: 'agent.started', parentId: context.parentId, task: context.task })
  }

  /**
   * Restores, as running elsewhere, the stored agents among `ids` this process does not hold
   * (a segment's children and dependencies); returns how many it found.
   */
  async restoreRemote(ids: readonly string[]): Promise<number> {
    const missing = ids.filter((id) => !this.registry.has(id))
    const records = await Promise.all(missing.map((id) => readAgentRecord(this.config.store, this.runId, id)))
    let found = 0
    for (const record of records) {
      if (!record || this.registry.has(record.id)) continue
      this.restoreAgent(record).remote = true
      found++
    }
    return found
  }

  restoreAgent(record: AgentRecord): AgentEntry {
    const source = `run ${this.runId}, agent ${record.id}`
    const definition = this.config.definitions.get(record.name)
    if (!definition) {
      throw new SnapshotError(
        source,
        `agent definition "${record.name}" is not registered in this runtime`,
        'name',
      )
    }
    if (record.runId !== this.runId)
      throw new SnapshotError(source, `record belongs to run "${record.runId}"`, 'runId')
    // A restored agent shares its kind's system message again, when it is still the same text.
    const messages = (record.snapshot.context as { messages?: ChatMessage[] }).messages
    const shared = this.systemMessageFor(definition)
    if (messages?.[0]?.role === 'system' && messages[0].content === shared.content) messages[0] = shared
    const context = record.snapshot.context as AgentContext
    let state: AgentState
    try {
      state = this.lifecycle.at(record.snapshot.value as AgentState['value'])
    } catch (error) {
      throw new SnapshotError(
        source,
        `cannot restore the agent machine: ${(error as Error).message}`,
        'snapshot',
      )
    }
    const settled = record.status === 'completed' || record.status === 'failed'
    return this.register(record.id, definition, state, context, record.parentId, record.depth, settled)
  }

  private register(
    id: string,
    definition: AgentDefinition,
    state: AgentState,
    context: AgentContext,
    parentId: string | null,
    depth: number,
    settled: boolean,
  ): AgentEntry {
    const entry: AgentEntry = {
      id,
      definition,
      limits: this.limitsFor(definition),
      state,
      context,
      attached: false,
      parentId,
      depth,
      settled,
      // Most agents never get a waiter or a dependent: they share the empty list until they do.
      onSettle: emptyList(),
      dependents: emptyList(),
      effect: 0,
      // Present from the start, so that setting them later keeps the entry's shape.
      abort: undefined,
      timer: undefined,
    }
    this.registry.set(id, entry)
    return entry
  }

  /** Starts an idle agent once its dependencies are settled, handing it their results. */
  startWhenReady(entry: AgentEntry): void {
    const { dependsOn } = entry.context
    const pending = dependsOn
      .map((id) => this.registry.get(id))
      .filter((dep) => dep && !dep.settled) as AgentEntry[]
    if (pending.length > 0) {
      if (pending.some((dependency) => dependency.remote)) {
        this.config.segment?.park('dependencies')
        return
      }
      for (const dependency of pending) {
        if (dependency.dependents.length === 0) dependency.dependents = [entry]
        else dependency.dependents.push(entry)
      }
      return
    }
    const results = dependsOn.map((id) => {
      const dependency = this.registry.get(id)
      const localId = id.slice(id.lastIndexOf('.') + 1)
      if (!dependency) return { id: localId, agent: 'unknown', status: 'failed' as const, error: missing(id) }
      return childResult(dependency, localId)
    })
    const failed = results.find((result) => result.status === 'failed')
    if (failed) {
      const error = new CohortError(
        'DEPENDENCY_FAILED',
        `dependency "${failed.id}" failed: ${failed.error?.message}`,
      )
      this.failAgent(entry, error)
      return
    }
    const deadline = deadlineOf(entry.context)
    const note =
      results.length > 0 ? `Results of the agents you depend on: ${JSON.stringify(results)}` : undefined
    const context = started(entry.context, deadline, note)
    this.emitStarted(context)
    this.send(entry, { type: 'RUN', context })
    if (deadline !== null) this.armTimeout(entry, deadline)
  }

  armTimeout(entry: AgentEntry, deadline: number): void {
    clearTimeout(entry.timer)
    const { timeoutMs } = entry.context
    entry.timer = setTimeout(
      () => {
        if (entry.settled) return
        this.failAgent(entry, new TimeoutError(`agent ${entry.id} timed out after ${timeoutMs} ms`))
      },
      Math.max(0, deadline - Date.now()),
    )
  }

  /** This process runs the agent from now on: each change of its state is written and acted on. */
  subscribe(entry: AgentEntry, onChange?: () => void): void {
    entry.attached = true
    if (onChange) entry.onChange = onChange
  }

  /**
   * Moves the agent's machine, and gives the agent the context that comes with the event. Every
   * event sent is one the machine takes in the agent's state: a settled agent is sent nothing.
   */
  private send(entry: AgentEntry, event: LifecycleEvent): void {
    if (entry.stopped) return
    entry.context = event.context
    entry.state = this.lifecycle.next(entry.state, event)
    if (entry.attached) this.changed(entry)
  }

  /** After a change of state: write it, then settle the agent or start what its new state calls for. */
  private changed(entry: AgentEntry): void {
    this.writer.schedule(entry)
    if (entry.state.status === 'done' && !entry.settled) this.settle(entry)
    else this.runEffect(entry)
    entry.onChange?.()
  }

  /** Lets go of the agent where it is: it takes no more events, and what it does is not written. */
  release(entry: AgentEntry): void {
    entry.attached = false
    entry.stopped = true
    clearTimeout(entry.timer)
    if (!entry.settled) this.stopEffect(entry)
  }

  /**
   * Starts the effect the agent's state calls for, unless one runs: thinking → a model call,
   * executing → its next action, suspended on children → waiting for them. Its outcome is one
   * step of the agent's loop (`advance`). (Cheaper than an invoked actor per step, and a
   * restored agent restarts its effect the same way.)
   */
  runEffect(entry: AgentEntry): void {
    if (entry.effect !== 0 || entry.settled || entry.remote || entry.stopped) return
    const { value, status } = entry.state
    if (status !== 'active') return
    const { context } = entry
    const thinking = value === 'running' && context.phase === 'thinking'
    const waiting = !thinking && value !== 'running' && suspendedOn(value) === 'children'
    if (!thinking && !waiting && value !== 'running') return
    // A switch nobody waits on any more is as good as a new one; one still waited on (an SDK
    // that never removes its listener, a queued model call) is replaced, so listeners never pile up.
    let abort = entry.abort
    if (!abort?.idle) {
      abort = new AbortSwitch()
      entry.abort = abort
    }
    const token = ++this.effects
    entry.effect = token
    if (thinking) this.onOutcome(entry, token, this.services.think(entry, abort), thinkStep)
    else if (waiting) {
      const ids = context.waitingOn ?? []
      this.onOutcome(entry, token, this.services.awaitChildren(entry, ids, abort), settledStep, settledIds)
    } else this.onOutcome(entry, token, this.services.act(entry, context.pending[0]!, abort), actStep)
  }

  /**
   * Makes the effect's outcome the agent's next step (`advance`; `resumeWith` when it names the
   * children that settled), in the one callback of the effect's promise: a second `then` to
   * compute the step cost a promise and a turn of the microtask queue in every step.
   */
  private onOutcome<T>(
    entry: AgentEntry,
    token: number,
    effect: Promise<T>,
    toStep: (entry: AgentEntry, output: T) => Step,
    settled?: (output: T) => string[],
  ): void {
    effect.then(
      (output) => {
        // An aborted effect (the agent settled or stopped) has nobody left to tell. Only
        // `stopEffect` aborts, and it also clears the token: the token says it all (reading a
        // signal's properties is slow in Node 20, where every AbortSignal has a map of its own).
        if (entry.effect !== token) return
        entry.effect = 0
        let step: Step
        try {
          step = toStep(entry, output)
        } catch (error) {
          this.failOrAbort(entry, error)
          return
        }
        // A throw here is the runtime's own failure, not the agent's: it fails the run.
        try {
          if (settled) this.resumeWith(entry, step, settled(output))
          else this.advance(entry, step)
        } catch (error) {
          this.abort(error)
        }
      },
      (error: unknown) => {
        if (entry.effect !== token) return
        entry.effect = 0
        this.failOrAbort(entry, error)
      },
    )
  }

  /** The effect failed: so does the agent, and the run when failing it throws. */
  private failOrAbort(entry: AgentEntry, error: unknown): void {
    try {
      this.failAgent(entry, error)
    } catch (failure) {
      this.abort(failure)
    }
  }

  /**
   * Applies one step of the agent's loop. A step that stays in `running` (the next model call,
   * the next action) becomes the agent's context, is written to the store and runs its effect;
   * one that leaves it goes to the machine, whose subscription does the same once the state changed.
   */
  advance(entry: AgentEntry, step: Step): void {
    if (step.repair !== undefined) {
      this.emitAgent(step.context, {
        type: 'agent.repair',
        error: step.repair,
        repairs: step.context.repairs,
      })
    }
    if (step.next === 'running' && entry.state.value === 'running') {
      entry.context = step.context
      this.writer.schedule(entry)
      this.runEffect(entry)
      return
    }
    this.send(entry, { type: lifecycleEvents[step.next], context: step.context })
  }

  /** A suspended agent goes on: its children settled (`settled`), or a person answered it. */
  resumeWith(entry: AgentEntry, step: Step, settled: string[] = []): void {
    this.emitAgent(step.context, { type: 'agent.resumed', settled })
    this.advance(entry, step)
  }

  /** Aborts the agent's running effect (cancel, timeout, a segment's end). */
  stopEffect(entry: AgentEntry, reason?: () => unknown): void {
    if (entry.effect !== 0) entry.abort?.abort(reason ? reason() : new CancelledError('stopped'))
    entry.effect = 0
  }

  private settle(entry: AgentEntry): void {
    entry.settled = true
    this.stopEffect(entry, () => {
      const { error } = entry.context
      return error ? fromErrorInfo(error) : new CancelledError('settled')
    })
    // A settled agent runs no more effects; its switch would stay with it for the whole run.
    entry.abort = undefined
    clearTimeout(entry.timer)
    this.cancelOrphans(entry)
    const waiters = entry.onSettle
    entry.onSettle = emptyList()
    for (const wake of waiters) wake()
    const dependents = entry.dependents
    entry.dependents = emptyList()
    for (const dependent of dependents) {
      if (dependent.state.value === 'idle') this.startWhenReady(dependent)
    }
    if (entry.parentId === null) this.runEnded = this.endRun(entry)
  }

  /** A settled agent's unsettled children can never hand their results to it: end them. */
  private cancelOrphans(entry: AgentEntry): void {
    for (const link of entry.context.children) {
      const child = this.registry.get(link.id)
      if (child && !child.settled && !child.remote)
        this.failAgent(child, new CancelledError(`parent ${entry.id} has ended`))
    }
  }

  /** Settles the run once its root agent has settled (also the run record, in segment mode). */
  async endRun(root: AgentEntry): Promise<void> {
    if (this.ending) return
    this.ending = true
    const { value } = root.state
    const { context } = root
    for (const entry of this.registry.values()) {
      if (!entry.settled && !entry.remote) this.failAgent(entry, new CancelledError('the run finished'))
    }
    let status: RunStatus = value === 'completed' ? 'completed' : 'failed'
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
      this.emitRun({ type: 'run.completed', result: record.result })
      this.resolveResult(record.result)
    } else if (record.status === 'cancelled') {
      this.emitRun({ type: 'run.cancelled', reason: record.error?.message ?? 'cancelled' })
      this.rejectResult(new CancelledError(record.error?.message ?? 'cancelled'))
    } else {
      const error = record.error ?? toErrorInfo(new Error('run failed'))
      this.emitRun({ type: 'run.failed', error })
      this.rejectResult(fromErrorInfo(error, record.rootAgentId))
    }
    this.config.bus.close()
  }

  /**
   * Stops every agent where it is, without writing: the store keeps the last real state, and a
   * later `resume` continues from it (a server shutting down). The result rejects with DETACHED.
   */
  async detach(): Promise<void> {
    if (this.isSettled || this.ending) return
    this.ending = true
    for (const entry of this.registry.values()) this.release(entry)
    await this.writer.flush()
    this.rejectResult(new CohortError('DETACHED', `run ${this.runId} was detached; resume it to continue`))
    this.config.bus.close()
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
    this.emitRun({ type: 'run.failed', error: info })
    this.rejectResult(error instanceof CohortError ? error : new AgentFailedError('(runtime)', info.message))
    this.config.bus.close()
  }
}

/** Steps of the loop from an effect's outcome, with the agent's context when the outcome came. */
const thinkStep = (entry: AgentEntry, output: ThinkOutcome): Step =>
  afterThought(entry.context, output, entry.limits.maxRepairs)
const actStep = (entry: AgentEntry, output: ActOutcome): Step =>
  afterAct(entry.context, output, entry.limits.maxRepairs)
const settledStep = (entry: AgentEntry, group: SettledGroup): Step => afterSettled(entry.context, group)
const settledIds = (group: SettledGroup): string[] => group.results.map((result) => result.id)

/** Which event of the agent machine a step that leaves `running` sends. */
const lifecycleEvents = {
  running: 'RUN',
  suspended: 'SUSPEND',
  external: 'AWAIT',
  completed: 'FINISH',
  failed: 'FAIL',
} as const satisfies Record<Step['next'], LifecycleEvent['type']>

function deadlineOf(context: AgentContext): number | null {
  return context.timeoutMs === null ? null : Date.now() + context.timeoutMs
}

export function tokensOf(context: AgentContext): number {
  return context.usage.promptTokens + context.usage.completionTokens
}

function missing(id: string): ErrorInfo {
  return { name: 'Error', code: 'MISSING_AGENT', message: `no record of agent ${id}` }
}
