import path from 'node:path'
import {
  type ChatModel,
  commandModel,
  createRuntime,
  defaultLimits,
  defineAgent,
  type EventSink,
  InvalidInputError,
  type Plan,
  type RunStore,
  type Runtime,
  readRunRecord,
} from '@cohort/core'
import { type CohortConfig, loadConfig } from './config.js'
import type { Home, Launch } from './home.js'

export interface Hosted {
  runtime: Runtime
  /** The agent a new run starts with. */
  root: string
  /** The task a new run gets when none is given. */
  task?: string
  /** The names of the agents a run may start with. */
  agents: string[]
}

/** Builds the runtime a launch describes, on the home's store and workspaces. */
export async function runtimeFor(launch: Launch, home: Home, logger: EventSink): Promise<Hosted> {
  if (launch.kind === 'config') return configRuntime(await loadConfig(launch.config), home, logger)
  return parallelRuntime(launch, home, logger)
}

/**
 * The store that keeps a run: the home's, or the one the config it was launched with brought
 * (`store` in the config), which `show`, `cancel` and `resume` must then read.
 */
export async function storeOfRun(home: Home, runId: string): Promise<RunStore> {
  if (await readRunRecord(home.store, runId)) return home.store
  const launch = await home.loadLaunch(runId).catch(() => undefined)
  if (launch?.kind !== 'config') return home.store
  const { store } = await loadConfig(launch.config)
  return store ? home.adopt(store) : home.store
}

export async function configRuntime(config: CohortConfig, home: Home, logger: EventSink): Promise<Hosted> {
  const model = config.model ?? (await envModel('the config has no `model`', 'give the config a `model`'))
  const root = config.root ?? config.agents[0]?.name
  if (!root || !config.agents.some((agent) => agent.name === root)) {
    throw new InvalidInputError(`config root agent "${root}" is not one of its agents`)
  }
  const runtime = createRuntime({
    agents: config.agents,
    ...(model && { model }),
    store: config.store ? home.adopt(config.store) : home.store,
    logger,
    workspaces: { root: home.workspacesDir, ...config.workspaces },
    ...(config.limits && { limits: config.limits }),
    ...(config.scheduler && { scheduler: config.scheduler }),
    ...(config.secrets && { secrets: config.secrets }),
  })
  const agents = config.agents.map((agent) => agent.name)
  return { runtime, root, agents, ...(config.task && { task: config.task }) }
}

/** The model of the environment (OPENAI_API_KEY…), or a clear error saying what to set. */
async function envModel(why: string, otherwise: string): Promise<ChatModel> {
  if (!process.env.OPENAI_API_KEY) {
    throw new InvalidInputError(`${why} and OPENAI_API_KEY is not set: set it, or ${otherwise}`)
  }
  // Loaded only when used: the SDK is a large part of the CLI's start-up time.
  const { modelFromEnv } = await import('@cohort/openai')
  return modelFromEnv({ name: 'none', complete: () => Promise.reject(new Error(why)) })
}

/**
 * `cohort parallel`: one agent per task, all at once, then an aggregate. With a command, each
 * task is a process agent in its own workspace and the aggregate is the map of their results;
 * with a language model, an aggregator agent combines them.
 */
export async function parallelRuntime(
  launch: Extract<Launch, { kind: 'parallel' }>,
  home: Home,
  logger: EventSink,
): Promise<Hosted> {
  const model = launch.command
    ? commandModel({ command: launch.command, args: launch.args ?? [] })
    : await envModel('cohort parallel needs a model: no --command was given', 'pass --command')
  const task = defineAgent({
    name: 'task',
    instructions: 'Do the task you are given, then finish with its result.',
    model,
  })
  const aggregate = defineAgent({
    name: 'aggregate',
    instructions:
      'Combine the results of the tasks you depend on into one answer: what each produced, and what they add up to.',
    model,
  })
  const runtime = createRuntime({
    agents: launch.command ? [task] : [task, aggregate],
    store: home.store,
    logger,
    workspaces: { root: home.workspacesDir, ...(launch.base && { base: path.resolve(launch.base) }) },
    // Every task is a step of the plan's one launch: as many as a run may hold, not a model's 20.
    limits: { maxChildrenPerLaunch: defaultLimits.maxAgents },
    // A task at work (its command or model call) holds a place; the plan's root, waiting on them, none.
    ...(launch.maxParallel !== undefined && { scheduler: { maxConcurrentAgents: launch.maxParallel } }),
  })
  // Started with runPlan only: no agent of its own to start a run with.
  return { runtime, root: 'cohort-plan', agents: [] }
}

/**
 * Refuses more tasks than one run holds, before anything is stored: runPlan's own refusal says to
 * raise limits.maxAgents, which `cohort parallel` has no flag for.
 */
export function checkParallelTasks(launch: Extract<Launch, { kind: 'parallel' }>): void {
  const most = mostTasks(launch)
  if (launch.tasks.length <= most) return
  const which = launch.command
    ? `cohort parallel --command takes at most ${most} tasks`
    : `cohort parallel on a model takes at most ${most} tasks (${mostTasks({ ...launch, command: 'sh' })} with --command)`
  throw new InvalidInputError(`${which}; got ${launch.tasks.length}: split the tasks over several runs`)
}

/** A run's agents (limits.maxAgents) less the plan's root and, on a model, the aggregate. */
function mostTasks(launch: Extract<Launch, { kind: 'parallel' }>): number {
  const besides = parallelPlan(launch).agents.length - launch.tasks.length
  return defaultLimits.maxAgents - 1 - besides
}

export function parallelPlan(launch: Extract<Launch, { kind: 'parallel' }>): Plan {
  const steps = launch.tasks.map((task, index) => ({
    id: `task-${index + 1}`,
    agent: 'task',
    task,
    ...(launch.timeoutMs !== undefined && { timeout_ms: launch.timeoutMs }),
  }))
  if (launch.command) return { agents: steps }
  return {
    agents: [
      ...steps,
      {
        id: 'aggregate',
        agent: 'aggregate',
        task: 'Combine the task results.',
        depends_on: steps.map((step) => step.id),
      },
    ],
  }
}

/**
 * Tasks separated by the word AND in capitals, trimmed; a task's own "and", and an AND inside
 * double quotes ("pros AND cons"), stay in it. Empty tasks are an error.
 */
export function splitTasks(text: string): string[] {
  // Quoted phrases are matched whole, so only an AND outside quotes separates.
  const parts = text.match(/"[^"]*"?|\bAND\b|[^"A]+|A/g) ?? []
  const pieces = ['']
  for (const part of parts) {
    if (part === 'AND') pieces.push('')
    else pieces[pieces.length - 1] += part
  }
  const tasks = pieces.map((task) => task.trim())
  if (tasks.some((task) => task.length === 0)) {
    throw new InvalidInputError(`cannot split "${text}" into tasks: expected "task A AND task B AND …"`)
  }
  return tasks
}
