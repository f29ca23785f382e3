import { customAlphabet } from 'nanoid'
import type { AgentDefinition } from '../agent/define-agent.js'
import { callStore, describeValue, InvalidInputError, RunNotFoundError } from '../errors.js'
import { type Answer, answerStored } from '../orchestrator/answer.js'
import { type CancelledRun, cancelStored } from '../orchestrator/cancel-stored.js'
import { checkContinueFrom } from '../orchestrator/continuation.js'
import { runTotals } from '../orchestrator/metrics.js'
import { runSegment } from '../orchestrator/segment.js'
import { assertRunId } from '../persistence/codec.js'
import { type Plan, parsePlan, planLayers } from '../plan/plan.js'
import { planAgentName } from '../plan/plan-agent.js'
import { type LiveRuns, liveRuns } from './live-runs.js'
import type { Run } from './run.js'
import { runtimeMetrics } from './runtime-metrics.js'
import { type RuntimeParts, runtimeParts } from './runtime-parts.js'
import type { Runtime, RuntimeOptions, StartOptions } from './types.js'

export type { EndedRun, RuntimeMetrics } from './runtime-metrics.js'
export type {
  AgentNameOf,
  AgentResultOf,
  Runtime,
  RuntimeOptions,
  SegmentHost,
  StartOptions,
} from './types.js'

/**
 * A new run's id: letters and digits only, so that it never begins with "-", which a command line
 * takes for an option (`cohort show -x1…`).
 */
const newRunId = customAlphabet('0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz', 12)

/** The runs of one process: start, resume, plans, segments, answers, shutdown. */
/** A runtime as its methods are written: a result's type comes from the definitions, at `createRuntime`. */
type UntypedRuntime = Omit<Runtime, 'start' | 'run'> & {
  start(agent: string, task: string, options?: StartOptions): Run
  run(agent: string, task: string, options?: StartOptions): Promise<unknown>
}

export function createRuntime<const Agents extends readonly AgentDefinition[]>(
  options: RuntimeOptions<Agents>,
): Runtime<Agents>
export function createRuntime(options: RuntimeOptions): Runtime {
  // Its options checked and what its runs share made; then the runs it holds and its claims on
  // them. Its methods call the functions below.
  const parts = runtimeParts(options)
  const { definitions, store, scheduler, redact } = parts
  const live = liveRuns(options, parts)
  const { runs, claims, everyRun, totals, orchestratorFor } = live

  const runtime: UntypedRuntime = {
    store,
    agents: definitions,
    start(agent, task, startOptions = {}) {
      checkStart(definitions, agent, task)
      return begin(live, agent, redact(task), checkStartOptions(startOptions))
    },
    async prepareRun(agent, task, startOptions = {}) {
      return prepareRun(parts, live, agent, task, checkStartOptions(startOptions))
    },
    async runSegment(runId, agentId, host) {
      assertRunId(runId)
      return runSegment(
        (hooks) => orchestratorFor(runId, { enqueue: (ids) => host.enqueue(ids), ...hooks }).orchestrator,
        agentId,
        host.signal,
      )
    },
    answer(runId, agentId, answer) {
      return answerRun(live, runId, agentId, answer)
    },
    cancelStored(runId, reason = 'cancelled by the caller') {
      return cancelStoredRun(live, runId, reason)
    },
    runPlan(plan, startOptions = {}) {
      if (startOptions?.continueFrom !== undefined)
        throw new InvalidInputError('runPlan cannot continue a session: use runtime.start with continueFrom')
      const checked = checkPlan(plan, options.onCycle, parts)
      return begin(
        live,
        planAgentName,
        JSON.stringify(checked),
        checkStartOptions(startOptions, planOptionKeys, "runPlan's"),
      )
    },
    shareLimits(shared) {
      return scheduler.share(shared)
    },
    metrics() {
      const liveTotals = [...runs.values()].map(({ orchestrator }) =>
        runTotals(orchestrator.registry.values()),
      )
      return runtimeMetrics(totals, liveTotals, scheduler)
    },
    async run(agent, task, startOptions) {
      return runtime.start(agent, task, startOptions).result
    },
    resume(runId) {
      return resumeRun(parts, live, runId)
    },
    get(runId) {
      return runs.get(runId)?.run
    },
    active() {
      return [...runs.values()].map((entry) => entry.run)
    },
    async shutdown() {
      live.shutDown()
      await Promise.all(runtime.active().map((run) => run.detach()))
      claims.close()
    },
    on(type, listener) {
      return everyRun.on(type, listener)
    },
  }
  return runtime as Runtime
}

/** Refuses an agent the runtime does not have (or `runPlan`'s own) and an empty task. */
function checkStart(definitions: RuntimeParts['definitions'], agent: string, task: string): void {
  if (!definitions.has(agent) || agent === planAgentName) {
    const names = [...definitions.keys()].filter((name) => name !== planAgentName)
    // Quoted by its start: a name from a request's body may be as long as the body.
    throw new InvalidInputError(
      `unknown agent "${String(agent).slice(0, 80)}"; registered agents: ${names.join(', ')}`,
    )
  }
  if (typeof task !== 'string' || task.trim() === '') {
    throw new InvalidInputError('task must be a non-empty string')
  }
}

/** The options a run takes: a record over `StartOptions`' keys, so that a new option must be named here. */
const startOptionKeys: Record<keyof StartOptions, true> = { runId: true, continueFrom: true }
/** `runPlan`'s: a plan run continues no session. */
const planOptionKeys: Partial<typeof startOptionKeys> = { runId: true }

/**
 * A run's options as given from JavaScript (`null`, a run id alone, `{ priority: 9 }`): an object
 * of known options, or none at all. An unknown key is refused, not ignored: it is a typo or an
 * option this version does not have.
 */
function checkStartOptions(
  startOptions: unknown,
  keys: Partial<typeof startOptionKeys> = startOptionKeys,
  owner = "a run's",
): StartOptions {
  if (typeof startOptions !== 'object' || startOptions === null || Array.isArray(startOptions))
    throw new InvalidInputError(
      `a run's options must be an object such as { runId: "nightly-1" }, or left out; got ${describeValue(startOptions)}`,
    )
  const unknown = Object.keys(startOptions).find((key) => !Object.hasOwn(keys, key))
  if (unknown !== undefined)
    throw new InvalidInputError(
      `unknown run option "${unknown}"; ${owner} options are: ${Object.keys(keys).join(', ')}`,
    )
  return startOptions
}

/** A new run in memory, its root begun soon (`start`, `runPlan`). */
function begin(live: LiveRuns, agent: string, task: string, startOptions: StartOptions): Run {
  live.refuseIfShutDown()
  const runId = startOptions.runId ?? newRunId()
  assertRunId(runId)
  const continueFrom = checkContinueFrom(startOptions.continueFrom)
  if (live.runs.has(runId)) throw new InvalidInputError(`run ${runId} is already running in this runtime`)
  const { run, orchestrator } = live.open(runId)
  orchestrator.beginSoon(agent, task, startOptions.runId !== undefined, continueFrom)
  return run
}

/** `runtime.prepareRun`: a run and its idle root written, for a distributed host to run. */
async function prepareRun(
  parts: RuntimeParts,
  live: LiveRuns,
  agent: string,
  task: string,
  startOptions: StartOptions,
): Promise<{ runId: string; rootAgentId: string }> {
  live.refuseIfShutDown()
  checkStart(parts.definitions, agent, task)
  const runId = startOptions.runId ?? newRunId()
  assertRunId(runId)
  const continueFrom = checkContinueFrom(startOptions.continueFrom)
  // Nothing runs here: a failure is begin's own error, thrown below.
  const hooks = { enqueue: async () => {}, park: () => {}, failed: () => {} }
  const orchestrator = live.orchestratorFor(runId, hooks).orchestrator
  await orchestrator.begin(agent, parts.redact(task), false, startOptions.runId !== undefined, continueFrom)
  return { runId, rootAgentId: orchestrator.record!.rootAgentId }
}

/** `runtime.answer`: an answer written into a stored agent's record, the run claimed meanwhile. */
async function answerRun(live: LiveRuns, runId: string, agentId: string, answer: Answer): Promise<void> {
  assertRunId(runId)
  // Claimed while the answer is written: two answers at once, or one to a run another process
  // runs, would each overwrite the agent the other changed.
  return onStoredRun(live, runId, 'run.approve, run.reject or run.resume', () =>
    answerStored(live.orchestratorFor(runId).orchestrator, agentId, answer),
  )
}

/** `runtime.cancelStored`: a stored run ended as cancelled through its agents' actors, the run claimed meanwhile. */
async function cancelStoredRun(live: LiveRuns, runId: string, reason: string): Promise<CancelledRun> {
  assertRunId(runId)
  if (typeof reason !== 'string' || reason.trim() === '')
    throw new InvalidInputError(`a cancel's reason must be a non-empty string, got ${describeValue(reason)}`)
  // Claimed while its agents are ended: an answer or a resume at once would write over them.
  return onStoredRun(live, runId, 'run.cancel', () =>
    cancelStored(live.orchestratorFor(runId).orchestrator, reason),
  )
}

/**
 * `work` on a stored run that is not live in this runtime (`useInstead` says what to call on a
 * live one): after this runtime's other work on it, and with the run claimed from other processes.
 */
function onStoredRun<T>(
  live: LiveRuns,
  runId: string,
  useInstead: string,
  work: () => Promise<T>,
): Promise<T> {
  return live.oneAtATime(runId, async () => {
    if (live.runs.has(runId))
      throw new InvalidInputError(`run ${runId} is live in this runtime: use ${useInstead}`)
    await live.claims.claim(runId)
    try {
      return await work()
    } finally {
      await live.claims.release(runId).catch(() => {})
    }
  })
}

/** `runPlan`'s plan parsed and checked before anything is stored, with the runtime's `onCycle` if it has none. */
function checkPlan(plan: Plan, runtimeOnCycle: RuntimeOptions['onCycle'], parts: RuntimeParts): Plan {
  const { definitions, limits } = parts
  const parsed = parsePlan(plan)
  // The runtime's onCycle is the plan's when the plan does not say.
  const onCycle = parsed.onCycle ?? runtimeOnCycle
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
  // Its steps are one launch of the plan's root, which the runtime's maxChildrenPerLaunch bounds as
  // it bounds a model's.
  if (checked.agents.length > limits.maxChildrenPerLaunch)
    throw new InvalidInputError(
      `invalid plan: its ${checked.agents.length} steps are launched at once, past limits.maxChildrenPerLaunch (${limits.maxChildrenPerLaunch}); raise it, or split the plan`,
    )
  if (limits.maxDepth < 1)
    throw new InvalidInputError(
      `invalid plan: its steps run at depth 1, past limits.maxDepth (${limits.maxDepth}); raise it to 1 or more`,
    )
  return checked
}

/** `runtime.resume`: a live run as it is, or a stored one claimed, read and restored. */
async function resumeRun(parts: RuntimeParts, live: LiveRuns, runId: string): Promise<Run> {
  assertRunId(runId)
  live.refuseIfShutDown()
  return live.oneAtATime(runId, () => resumeStored(parts, live, runId))
}

/** `resumeRun` once no other call of this runtime works on the stored run. */
async function resumeStored(parts: RuntimeParts, live: LiveRuns, runId: string): Promise<Run> {
  const { store, storeTimeoutMs } = parts
  const { runs, claims } = live
  live.refuseIfShutDown()
  let running = runs.get(runId)
  if (running?.orchestrator.detaching) {
    // Its last state is still being written: resumed from the store once the detach is over
    // (the run leaves memory before its result's other listeners hear of it).
    await running.orchestrator.result.catch(() => {})
    live.refuseIfShutDown()
    running = runs.get(runId)
  }
  if (running) return running.run
  // Before reading it: what is read is then no other process's to change.
  await claims.claim(runId)
  try {
    const stored = await callStore('read', runId, storeTimeoutMs, () => store.loadRun(runId))
    if (!stored) throw new RunNotFoundError(runId)
    // Its hosts take no claim (many run its agents at once): refused here, not run twice.
    if (stored.run.distributed && stored.run.status === 'running') {
      throw new InvalidInputError(
        `run ${runId} is run by distributed hosts (made with prepareRun, as @cohort/bullmq's enqueueRun does): continue it there (resumeRun of @cohort/bullmq), not with runtime.resume, which would run its agents beside theirs`,
      )
    }
    // Shut down while the store answered: nothing is started any more.
    live.refuseIfShutDown()
    const again = runs.get(runId)
    if (again) {
      // Resumed meanwhile by another call: that run holds the claim.
      await claims.release(runId)
      return again.run
    }
    const { run, orchestrator } = live.open(runId)
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
}
