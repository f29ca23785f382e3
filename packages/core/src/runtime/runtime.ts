import { customAlphabet } from 'nanoid'
import type { AgentDefinition } from '../agent/define-agent.js'
import { checkLimits, type RunLimits, resolveLimits } from '../agent/limits.js'
import { CohortError, callStore, InvalidInputError } from '../errors.js'
import { EventBus } from '../events/event-bus.js'
import type { EventSink } from '../events/logger.js'
import type { CohortEvent, CohortEventType } from '../events/types.js'
import type { ChatModel } from '../models/types.js'
import { type Answer, answerStored } from '../orchestrator/answer.js'
import type { Durability, Inspector } from '../orchestrator/config.js'
import type { SegmentHooks } from '../orchestrator/launch.js'
import { type RunTotals, runTotals } from '../orchestrator/metrics.js'
import { Orchestrator } from '../orchestrator/orchestrator.js'
import { runSegment, type SegmentOutcome } from '../orchestrator/segment.js'
import { assertRunId } from '../persistence/codec.js'
import { memoryStore } from '../persistence/memory-store.js'
import type { RunStatus, RunStore } from '../persistence/records.js'
import { type Plan, parsePlan, planLayers } from '../plan/plan.js'
import { definePlanAgent, planAgentName } from '../plan/plan-agent.js'
import { createRedactor } from '../protocol/redact.js'
import { Scheduler, type SchedulerOptions, type SchedulerStats } from '../scheduler/scheduler.js'
import type { SharedLimits } from '../scheduler/shared-limits.js'
import { type WorkspaceOptions, Workspaces } from '../workspaces/workspaces.js'
import { Run } from './run.js'
import { RunClaims } from './run-claims.js'
import { checkRuntimeOptions } from './runtime-options.js'

export interface RuntimeOptions {
  agents: readonly AgentDefinition[]
  /** The model of every agent that names none. */
  model?: ChatModel
  /** Where runs are kept (default: `memoryStore()`). */
  store?: RunStore
  limits?: Partial<RunLimits>
  /** Receives every event of every run: `createLogger()`, or your own sink. */
  logger?: EventSink
  /** Model calls in flight, priorities, rate limits and start spacing, across every run. */
  scheduler?: SchedulerOptions
  /** A dependency cycle in a launch is refused to the model (default) or run in launch order. */
  onCycle?: 'refuse' | 'sequential'
  /** Strings never to store, log or emit (API keys, tokens); `OPENAI_API_KEY` is always included. */
  secrets?: string[]
  /** A store write that takes longer fails the run with a `StoreError` (default 30 s). */
  storeTimeoutMs?: number
  /** One directory per agent (for process agents and tools), and conflict reports for parallel groups. */
  workspaces?: WorkspaceOptions
  /**
   * When a step is written (default `sync`): before any effect that depends on it starts, so a
   * crash repeats only what was in flight; `async` writes behind the agents (docs/architecture.md, "Durability").
   */
  durability?: Durability
  /**
   * An XState inspector, given to every run's actor and so to every agent's: the `inspect` of
   * `@statelyai/inspect`'s `createBrowserInspector()`, or any function of inspection events.
   */
  inspect?: Inspector
}

/** A distributed host: it schedules a segment for each agent a segment creates. */
export interface SegmentHost {
  enqueue(agentIds: string[]): Promise<void>
  /**
   * Aborted when this host no longer holds the segment (a job queue gave it to another worker):
   * the segment stops where it is, writes nothing more, and rejects with the signal's reason.
   */
  signal?: AbortSignal
}

/** Totals across the runs this runtime has held in this process. */
export interface RuntimeMetrics {
  runs: { active: number; completed: number; failed: number; cancelled: number }
  modelCalls: SchedulerStats
  /** With `scheduler.maxConcurrentAgents`: agents at work now, and those waiting for a place. */
  atWork?: { working: number; queued: number; limit: number }
  agents: number
  timeouts: number
  errors: number
  retries: number
  tokens: number
  cost: number
}

export interface StartOptions {
  /** Your own run id (1-64 letters, digits, "_" or "-"); generated when omitted. */
  runId?: string
}

export interface Runtime {
  readonly store: RunStore
  readonly agents: ReadonlyMap<string, AgentDefinition>
  /** Starts a run and returns at once. */
  start(agent: string, task: string, options?: StartOptions): Run
  /** Starts a run and waits for its result. */
  run(agent: string, task: string, options?: StartOptions): Promise<unknown>
  /** Runs a plan given as data (agents with `depends_on`) without a coordinator model. */
  runPlan(plan: Plan, options?: StartOptions): Run
  metrics(): RuntimeMetrics
  /** Continues a stored run (after a crash, in another process); a live run of this runtime is returned as is. */
  resume(runId: string): Promise<Run>
  /**
   * Distributed execution: writes a run and its idle root agent without starting it, so a
   * host (BullMQ workers) can run it with `runSegment`.
   */
  prepareRun(
    agent: string,
    task: string,
    options?: StartOptions,
  ): Promise<{ runId: string; rootAgentId: string }>
  /** Runs one agent of a stored run until it settles or must wait on work elsewhere (see `SegmentOutcome`). */
  runSegment(runId: string, agentId: string, host: SegmentHost): Promise<SegmentOutcome>
  /**
   * Answers an agent of a stored run that waits on a person (approve or reject its tool call,
   * or give it input) by writing the answer into its record, without running anything; for
   * distributed hosts, which then run it again. In one process, use `run.approve/reject/resume`.
   */
  answer(runId: string, agentId: string, answer: Answer): Promise<void>
  /** A run this runtime holds in memory. */
  get(runId: string): Run | undefined
  /** Runs in memory that have not settled. */
  active(): Run[]
  /**
   * Counts `scheduler.rateLimits` and `maxConcurrentModelCalls` in `shared`, a store that other
   * processes share, from now on (`createWorker` of @cohort/bullmq does it); returns the undo.
   */
  shareLimits(shared: SharedLimits): () => void
  /**
   * Detaches every active run (see `Run.detach`): everything is stored, nothing settles. From
   * then on the runtime starts and resumes nothing (a `SHUT_DOWN` error): a new one continues the runs.
   */
  shutdown(): Promise<void>
  /**
   * Subscribes to every event (`'event'`) or one type, of every run this runtime holds, from now
   * on (a server streaming all its runs); returns the unsubscribe function.
   */
  on<T extends CohortEventType>(
    type: T | 'event',
    listener: (event: Extract<CohortEvent, { type: T }>) => void,
  ): () => void
}

/**
 * A new run's id: letters and digits only, so that it never begins with "-", which a command line
 * takes for an option (`cohort show -x1…`).
 */
const newRunId = customAlphabet('0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz', 12)

export function createRuntime(options: RuntimeOptions): Runtime {
  checkRuntimeOptions(options)
  const definitions = indexAgents(options.agents)
  definitions.set(planAgentName, definePlanAgent(options.agents.map((agent) => agent.name)))
  if (!options.model) {
    const without = options.agents.find((agent) => !agent.model)
    if (without)
      throw new InvalidInputError(`agent "${without.name}" has no model: pass \`model\` to createRuntime`)
  }
  const limits = resolveLimits(options.limits)
  const store = options.store ?? memoryStore()
  const runs = new Map<string, { run: Run; orchestrator: Orchestrator }>()
  const scheduler = new Scheduler(options.scheduler)
  const redact = createRedactor([
    ...(options.secrets ?? []),
    ...[options.model, ...options.agents.map((agent) => agent.model)].flatMap(
      (model) => model?.secrets ?? [],
    ),
  ])
  const workspaces = options.workspaces ? new Workspaces(options.workspaces) : undefined
  const totals: Omit<RuntimeMetrics, 'modelCalls' | 'runs'> & {
    runs: Omit<RuntimeMetrics['runs'], 'active'>
  } = {
    runs: { completed: 0, failed: 0, cancelled: 0 },
    agents: 0,
    timeouts: 0,
    errors: 0,
    retries: 0,
    tokens: 0,
    cost: 0,
  }
  const addTotals = (status: Exclude<RunStatus, 'running'>, metrics: RunTotals) => {
    totals.runs[status]++
    totals.agents += metrics.agents
    totals.timeouts += metrics.timeouts
    totals.errors += metrics.errors
    totals.retries += metrics.retries
    totals.tokens += metrics.tokens.total
    totals.cost += metrics.cost
  }

  /** An orchestrator whose events reach the logger; with `host`, one that runs segments for it. */
  // Every run's events pass through it: the logger, and `runtime.on`.
  const everyRun = new EventBus()
  if (options.logger) {
    const sink = options.logger
    everyRun.subscribe((event) => sink.handle(event))
  }
  // A run another process takes over (this one stalled past its claim) stops here.
  const claims = new RunClaims(store, (runId, error) => runs.get(runId)?.orchestrator.abort(error))
  const orchestratorFor = (runId: string, segment?: SegmentHooks) => {
    const bus = new EventBus(everyRun)
    const orchestrator = new Orchestrator({
      runId,
      definitions,
      model: options.model,
      limits,
      store,
      bus,
      scheduler,
      onCycle: options.onCycle ?? 'refuse',
      redact,
      storeTimeoutMs: options.storeTimeoutMs ?? 30_000,
      workspaces,
      durability: options.durability ?? 'sync',
      inspect: options.inspect,
      segment,
      // A distributed run's segments run in many workers at once: its queue keeps them apart.
      claims: segment
        ? undefined
        : {
            claim: () => claims.claim(runId),
            release: () => claims.release(runId),
            check: () => claims.check(runId),
          },
    })
    return { orchestrator, bus }
  }

  const open = (runId: string) => {
    const { orchestrator, bus } = orchestratorFor(runId)
    const run = new Run(orchestrator, bus)
    runs.set(runId, { run, orchestrator })
    // Settled runs leave memory; the store keeps them. A run is counted once, when it ends: a
    // detached one is counted by the process that finishes it, which holds its whole usage again.
    orchestrator.result
      .finally(() => {
        // Its claim was let go of by the orchestrator, before its end was told.
        runs.delete(runId)
        workspaces?.forget(runId)
        const status = orchestrator.record?.status ?? 'running'
        if (status !== 'running' && orchestrator.endedHere)
          addTotals(status, runTotals(orchestrator.registry.values()))
      })
      .catch(() => {})
    return { run, orchestrator }
  }

  let shutDown = false
  const refuseIfShutDown = () => {
    if (shutDown) {
      throw new CohortError(
        'SHUT_DOWN',
        'this runtime was shut down (runtime.shutdown): it starts and resumes no run; its runs are stored, for a new runtime to resume',
      )
    }
  }

  const begin = (agent: string, task: string, startOptions: StartOptions) => {
    refuseIfShutDown()
    const runId = startOptions.runId ?? newRunId()
    assertRunId(runId)
    if (runs.has(runId)) throw new InvalidInputError(`run ${runId} is already running in this runtime`)
    const { run, orchestrator } = open(runId)
    orchestrator.beginSoon(agent, task, startOptions.runId !== undefined)
    return run
  }

  const checkStart = (agent: string, task: string) => {
    if (!definitions.has(agent) || agent === planAgentName) {
      const names = [...definitions.keys()].filter((name) => name !== planAgentName)
      throw new InvalidInputError(`unknown agent "${agent}"; registered agents: ${names.join(', ')}`)
    }
    if (typeof task !== 'string' || task.trim() === '') {
      throw new InvalidInputError('task must be a non-empty string')
    }
  }

  const runtime: Runtime = {
    store,
    agents: definitions,
    start(agent, task, startOptions = {}) {
      checkStart(agent, task)
      return begin(agent, redact(task), startOptions)
    },
    async prepareRun(agent, task, startOptions = {}) {
      refuseIfShutDown()
      checkStart(agent, task)
      const runId = startOptions.runId ?? newRunId()
      assertRunId(runId)
      // Nothing runs here: a failure is begin's own error, thrown below.
      const hooks = { enqueue: async () => {}, park: () => {}, failed: () => {} }
      const orchestrator = orchestratorFor(runId, hooks).orchestrator
      await orchestrator.begin(agent, redact(task), false, startOptions.runId !== undefined)
      return { runId, rootAgentId: orchestrator.record!.rootAgentId }
    },
    async runSegment(runId, agentId, host) {
      assertRunId(runId)
      return runSegment(
        (hooks) => orchestratorFor(runId, { enqueue: (ids) => host.enqueue(ids), ...hooks }).orchestrator,
        agentId,
        host.signal,
      )
    },
    async answer(runId, agentId, answer) {
      assertRunId(runId)
      if (runs.has(runId)) {
        throw new InvalidInputError(
          `run ${runId} is live in this runtime: use run.approve, run.reject or run.resume`,
        )
      }
      // Claimed while the answer is written: two answers at once, or one to a run another process
      // runs, would each overwrite the agent the other changed.
      await claims.claim(runId)
      try {
        await answerStored(orchestratorFor(runId).orchestrator, agentId, answer)
      } finally {
        await claims.release(runId).catch(() => {})
      }
    },
    runPlan(plan, startOptions = {}) {
      const parsed = parsePlan(plan)
      // The runtime's onCycle is the plan's when the plan does not say.
      const onCycle = parsed.onCycle ?? options.onCycle
      const checked: Plan = onCycle === undefined ? parsed : { ...parsed, onCycle }
      // A cycle is refused here, as planLayers refuses it, unless the plan runs it in order.
      planLayers(checked)
      for (const step of checked.agents) {
        if (!definitions.has(step.agent) || step.agent === planAgentName) {
          throw new InvalidInputError(`plan step "${step.id}" names unknown agent "${step.agent}"`)
        }
      }
      // Refused now rather than by its launch, once the run is stored.
      const agents = checked.agents.length + 1
      if (agents > limits.maxAgents)
        throw new InvalidInputError(
          `invalid plan: ${agents - 1} steps and the run's root are ${agents} agents, past limits.maxAgents (${limits.maxAgents}); raise it, or split the plan`,
        )
      if (limits.maxDepth < 1)
        throw new InvalidInputError(
          `invalid plan: its steps run at depth 1, past limits.maxDepth (${limits.maxDepth}); raise it to 1 or more`,
        )
      return begin(planAgentName, JSON.stringify(checked), startOptions)
    },
    shareLimits(shared) {
      return scheduler.share(shared)
    },
    metrics() {
      const live = [...runs.values()].map(({ orchestrator }) => runTotals(orchestrator.registry.values()))
      const sum = (pick: (m: RunTotals) => number) => live.reduce((total, m) => total + pick(m), 0)
      return {
        runs: { active: live.length, ...totals.runs },
        modelCalls: scheduler.stats(),
        ...(scheduler.agents && { atWork: { ...scheduler.agents.stats, limit: scheduler.agents.limit } }),
        agents: totals.agents + sum((m) => m.agents),
        timeouts: totals.timeouts + sum((m) => m.timeouts),
        errors: totals.errors + sum((m) => m.errors),
        retries: totals.retries + sum((m) => m.retries),
        tokens: totals.tokens + sum((m) => m.tokens.total),
        cost: totals.cost + sum((m) => m.cost),
      }
    },
    async run(agent, task, startOptions) {
      return runtime.start(agent, task, startOptions).result
    },
    async resume(runId) {
      assertRunId(runId)
      refuseIfShutDown()
      const live = runs.get(runId)
      if (live) return live.run
      // Before reading it: what is read is then no other process's to change.
      await claims.claim(runId)
      try {
        const stored = await callStore('read', runId, () => store.loadRun(runId))
        if (!stored) throw new CohortError('RUN_NOT_FOUND', `run ${runId} is not in the store`)
        // Shut down while the store answered: nothing is started any more.
        refuseIfShutDown()
        const again = runs.get(runId)
        if (again) {
          // Resumed meanwhile by another call: that run holds the claim.
          await claims.release(runId)
          return again.run
        }
        const { run, orchestrator } = open(runId)
        try {
          await orchestrator.restore(stored)
        } catch (error) {
          runs.delete(runId)
          throw error
        }
        return run
      } catch (error) {
        if (!runs.has(runId)) await claims.release(runId).catch(() => {})
        throw error
      }
    },
    get(runId) {
      return runs.get(runId)?.run
    },
    active() {
      return [...runs.values()].map((entry) => entry.run)
    },
    async shutdown() {
      shutDown = true
      await Promise.all(runtime.active().map((run) => run.detach()))
      claims.close()
    },
    on(type, listener) {
      return everyRun.on(type, listener)
    },
  }
  return runtime
}

function indexAgents(agents: readonly AgentDefinition[]): Map<string, AgentDefinition> {
  if (!Array.isArray(agents) || agents.length === 0) {
    throw new InvalidInputError('createRuntime needs at least one agent')
  }
  const byName = new Map<string, AgentDefinition>()
  for (const [index, agent] of agents.entries()) {
    // From JavaScript or a config file, an agent may be a plain object: say so, not "x is not iterable".
    if (typeof agent?.name !== 'string' || !Array.isArray(agent.tools) || !Array.isArray(agent.subagents)) {
      throw new InvalidInputError(
        `agents[${index}] (${JSON.stringify(agent?.name ?? null)}) is not an agent definition: make it with defineAgent({ name, instructions, tools, subagents })`,
      )
    }
    if (agent.name === planAgentName) {
      throw new InvalidInputError(
        `agent name "${planAgentName}" is taken by runPlan's own agent; choose another`,
      )
    }
    if (byName.has(agent.name)) throw new InvalidInputError(`agent "${agent.name}" is defined twice`)
    // Checked here rather than when the agent is first launched, where it would fail its parent.
    if (agent.limits) checkLimits(agent.limits, `of agent "${agent.name}"`)
    byName.set(agent.name, agent)
  }
  for (const agent of agents) {
    for (const sub of agent.subagents) {
      if (!byName.has(sub)) {
        throw new InvalidInputError(
          `agent "${agent.name}" lists sub-agent "${sub}", which is not among the runtime's agents`,
        )
      }
    }
  }
  return byName
}
