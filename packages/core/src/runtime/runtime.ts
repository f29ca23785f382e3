import { customAlphabet } from 'nanoid'
import { resolveLimits } from '../agent/limits.js'
import { CohortError, callStore, InvalidInputError } from '../errors.js'
import { EventBus } from '../events/event-bus.js'
import { answerStored } from '../orchestrator/answer.js'
import type { SegmentHooks } from '../orchestrator/launch.js'
import { runTotals } from '../orchestrator/metrics.js'
import { Orchestrator } from '../orchestrator/orchestrator.js'
import { runSegment } from '../orchestrator/segment.js'
import { assertRunId } from '../persistence/codec.js'
import { memoryStore } from '../persistence/memory-store.js'
import { type Plan, parsePlan, planLayers } from '../plan/plan.js'
import { definePlanAgent, planAgentName } from '../plan/plan-agent.js'
import { createRedactor } from '../protocol/redact.js'
import { Scheduler } from '../scheduler/scheduler.js'
import { Workspaces } from '../workspaces/workspaces.js'
import { indexAgents } from './agent-definitions.js'
import { Run } from './run.js'
import { RunClaims } from './run-claims.js'
import { addTotals, newTotals, runtimeMetrics } from './runtime-metrics.js'
import { checkRuntimeOptions } from './runtime-options.js'
import type { Runtime, RuntimeOptions, StartOptions } from './types.js'

export type { RuntimeMetrics } from './runtime-metrics.js'
export type { Runtime, RuntimeOptions, SegmentHost, StartOptions } from './types.js'

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
  const totals = newTotals()

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
          addTotals(totals, status, runTotals(orchestrator.registry.values()))
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
      return runtimeMetrics(totals, live, scheduler)
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
