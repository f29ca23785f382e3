import type { AgentDefinition } from '../agent/define-agent.js'
import type { RunLimits } from '../agent/limits.js'
import type { EventSink } from '../events/logger.js'
import type { CohortEvent, CohortEventType } from '../events/types.js'
import type { ChatModel } from '../models/types.js'
import type { Answer } from '../orchestrator/answer.js'
import type { CancelledRun } from '../orchestrator/cancel-stored.js'
import type { Durability, Inspector } from '../orchestrator/config.js'
import type { ContinueFrom } from '../orchestrator/continuation.js'
import type { SegmentOutcome } from '../orchestrator/segment.js'
import type { RunStore } from '../persistence/records.js'
import type { Plan } from '../plan/plan.js'
import type { SchedulerOptions } from '../scheduler/scheduler.js'
import type { SharedLimits } from '../scheduler/shared-limits.js'
import type { WorkspaceOptions } from '../workspaces/workspaces.js'
import type { Run } from './run.js'
import type { RuntimeMetrics } from './runtime-metrics.js'

// The runtime's public types: what createRuntime takes and what it returns.

export interface RuntimeOptions<Agents extends readonly AgentDefinition[] = readonly AgentDefinition[]> {
  agents: Agents
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
  /**
   * Strings never to store, log or emit (API keys, tokens), hidden as given. `OPENAI_API_KEY` and
   * models' keys are included unless they are placeholders (plain words such as `ollama`).
   */
  secrets?: string[]
  /**
   * A store call (a write, the read of a resume, a claim or its release) that takes longer fails
   * the run with a `StoreError` (default 30 s).
   */
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
   * One that throws is reported once (a process warning) and called no more.
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

export interface StartOptions {
  /** Your own run id (1-64 letters, digits, "_" or "-"); generated when omitted. */
  runId?: string
  /**
   * Continues the session of a settled (completed or failed) agent of a stored run: the new root
   * begins with its messages (under its own system message), then the task; a process agent's
   * workspace starts as a copy of that agent's. A run id names its root; `{ runId, agentId }`
   * another agent. Not for `runPlan`. The run record notes it as `continuedFrom`.
   */
  continueFrom?: ContinueFrom
}

/** The names of these agent definitions. */
export type AgentNameOf<Agents extends readonly AgentDefinition[]> = Agents[number]['name']

/** The result of the agent named `Name` among these definitions (its `output` schema's type). */
export type AgentResultOf<Agents extends readonly AgentDefinition[], Name extends string> =
  Extract<Agents[number], { name: Name }> extends AgentDefinition<infer Result> ? Result : unknown

/**
 * `Agents`: the definitions it was given. Given as a literal list (`createRuntime({ agents:
 * [lead, worker] })`), `start` takes only their names and types the result by the agent's `output`.
 */
export interface Runtime<Agents extends readonly AgentDefinition[] = readonly AgentDefinition[]> {
  readonly store: RunStore
  readonly agents: ReadonlyMap<string, AgentDefinition>
  /** Starts a run and returns at once. */
  start<Name extends AgentNameOf<Agents>>(
    agent: Name,
    task: string,
    options?: StartOptions,
  ): Run<AgentResultOf<Agents, Name>>
  /** Starts a run and waits for its result. */
  run<Name extends AgentNameOf<Agents>>(
    agent: Name,
    task: string,
    options?: StartOptions,
  ): Promise<AgentResultOf<Agents, Name>>
  /** Runs a plan given as data (agents with `depends_on`) without a coordinator model. */
  runPlan(plan: Plan, options?: StartOptions): Run
  metrics(): RuntimeMetrics
  /**
   * Continues a stored run (after a crash, in another process); a live run of this runtime is
   * returned as is, one being detached is resumed from the store once its detach is over.
   */
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
  /**
   * Ends a stored run as cancelled without running anything, as `run.cancel` would: each
   * unsettled agent fails with CANCELLED (`reason`) through its actor, and the run record says
   * cancelled. For distributed hosts, whose workers must stop their segments of it (`cancelRun`
   * of @cohort/bullmq does both). A run that had ended is left as it was: `alreadyEnded` says so.
   * In one process, use `run.cancel`.
   */
  cancelStored(runId: string, reason?: string): Promise<CancelledRun>
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
