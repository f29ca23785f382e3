import type { AgentDefinition } from '../agent/define-agent.js'
import { type RunLimits, resolveLimits } from '../agent/limits.js'
import { InvalidInputError } from '../errors.js'
import { memoryStore } from '../persistence/memory-store.js'
import type { RunStore } from '../persistence/records.js'
import { definePlanAgent, planAgentName } from '../plan/plan-agent.js'
import { createRedactor, type Redactor } from '../protocol/redact.js'
import { Scheduler } from '../scheduler/scheduler.js'
import { Workspaces } from '../workspaces/workspaces.js'
import { indexAgents } from './agent-definitions.js'
import { checkRuntimeOptions } from './runtime-options.js'
import type { RuntimeOptions } from './types.js'

/** What every run of a runtime shares, made once from `createRuntime`'s options. */
export interface RuntimeParts {
  /** The runtime's agents by name, `runPlan`'s own among them. */
  readonly definitions: Map<string, AgentDefinition>
  readonly limits: RunLimits
  readonly store: RunStore
  readonly scheduler: Scheduler
  /** Hides the runtime's secrets and its models' (`ChatModel.secrets`). */
  readonly redact: Redactor
  readonly workspaces: Workspaces | undefined
  /** How long any one store call may take before it fails the run (`storeTimeoutMs`). */
  readonly storeTimeoutMs: number
}

/**
 * `createRuntime`'s options checked (a bad one throws `InvalidInputError`), then its parts, with
 * their defaults: a memory store, the default limits, no workspaces, 30 s for a store call.
 */
export function runtimeParts(options: RuntimeOptions): RuntimeParts {
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
  const scheduler = new Scheduler(options.scheduler)
  const redact = createRedactor(
    options.secrets ?? [],
    [options.model, ...options.agents.map((agent) => agent.model)].flatMap((model) => model?.secrets ?? []),
  )
  const workspaces = options.workspaces ? new Workspaces(options.workspaces) : undefined
  const storeTimeoutMs = options.storeTimeoutMs ?? 30_000
  return { definitions, limits, store, scheduler, redact, workspaces, storeTimeoutMs }
}
