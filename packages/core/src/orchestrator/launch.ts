import { type AgentContext, awaitedAgents, type ChildLink } from '../agent/context.js'
import { CancelledError } from '../errors.js'
import type { AgentEventInput } from '../events/types.js'
import { checkDependencies, sequentialOrder } from '../plan/dependency-graph.js'
import type { ActionOf, LaunchSpec } from '../protocol/actions.js'
import { nextTurn } from '../thenable.js'
import type { AgentEntry } from './agent-entry.js'
import type { AgentRegistry } from './registry.js'
import { orphaned } from './settlement.js'

type LaunchAction = ActionOf<'launch_subagents'>

/** What a distributed host (a BullMQ worker) provides to run one agent's segment. */
export interface SegmentHooks {
  /** Agents created here that must run: the host schedules a segment for each. */
  enqueue(agentIds: string[]): Promise<void>
  /** The agent cannot go on here: it waits on agents that run elsewhere. */
  park(reason: 'children' | 'dependencies'): void
  /** The runtime itself failed here (a store that cannot write): the segment ends with `error`. */
  failed(error: unknown): void
}

/** What a launch needs of its run. */
export interface LaunchHost {
  readonly agents: AgentRegistry
  readonly onCycle: 'refuse' | 'sequential'
  readonly segment: SegmentHooks | undefined
  /** Why the run is being cancelled, if it is (read as late as possible). */
  cancelReason(): string | undefined
  written(entry: AgentEntry): Promise<void>
  emitAgent(context: AgentContext, event: AgentEventInput): void
  failAgent(entry: AgentEntry, error: unknown): void
  startWhenReady(entry: AgentEntry): void
}

/** A launch refused: why, and the limit that refused it when one did (a cycle or an id clash is none). */
export type LaunchRefusal = { ok: false; reason: string; limit?: string }

export type LaunchOutcome = { ok: true; children: ChildLink[] } | LaunchRefusal

/**
 * A child of the launch: its link, the agents it waits for as run-wide ids (its dependencies, then
 * the one it runs after in a launch run one after another), and whether it exists already.
 */
export interface PlannedChild {
  link: ChildLink
  spec: LaunchSpec
  dependsOn: string[]
  runsAfter: string[]
  /** Restored from the store: a launch replayed after a crash that cut it off. */
  exists: boolean
}

export type LaunchPlan =
  | { ok: true; children: PlannedChild[]; warnings: string[]; existing: boolean }
  | LaunchRefusal

/**
 * Decides what a launch creates: ids, limits, dependencies. Pure apart from reading the
 * registry, so a refused launch changes nothing.
 */
export function planLaunch(
  parent: AgentEntry,
  specs: LaunchSpec[],
  registry: ReadonlyMap<string, AgentEntry>,
  onCycle: 'refuse' | 'sequential',
  /** Agents other launches under way have yet to make. */
  pending = 0,
): LaunchPlan {
  const { context } = parent
  const taken = new Set(context.children.map((child) => child.localId))
  // An id the model did not give is `<agent>-<n>`, its number the next free one: not one of the
  // earlier children's ids, nor one the model gives in this launch. The same launch replayed
  // after a crash gets the same ids.
  const used = new Set([...taken, ...specs.flatMap((spec) => spec.id ?? [])])
  const links = specs.map((spec, index) => {
    let localId = spec.id
    for (let n = context.children.length + index + 1; localId === undefined; n++) {
      if (!used.has(`${spec.agent}-${n}`)) localId = `${spec.agent}-${n}`
    }
    used.add(localId)
    return { localId, id: `${parent.id}.${localId}`, agent: spec.agent, task: spec.task }
  })
  const collision = links.find((link) => taken.has(link.localId))
  if (collision)
    return { ok: false, reason: `id "${collision.localId}" is already used by another sub-agent` }

  const check = checkDependencies(
    links.map((link, i) => ({
      id: link.localId,
      // A position in the launch is the id that agent has, given or made above.
      dependsOn: (specs[i]!.depends_on ?? []).map((dep) =>
        typeof dep === 'number' ? links[dep]!.localId : dep,
      ),
    })),
    taken,
  )
  const warnings = check.dropped.map(
    ({ id, dependsOn }) => `depends_on "${dependsOn}" of "${id}" names no sibling; dropped`,
  )
  let edges = check.edges
  let after = new Map<string, string[]>()
  if (check.cycle) {
    const cycle = check.cycle.join(' → ')
    if (onCycle === 'refuse') {
      return {
        ok: false,
        reason: `launch refused: dependency cycle ${cycle}; remove one of these depends_on`,
      }
    }
    // Each is given the results of its depends_on that run before it; one naming a later agent cannot be.
    const order = sequentialOrder(
      links.map((link) => link.localId),
      edges,
    )
    const dropped = order.dropped.map(({ id, dependsOn }) => `depends_on "${dependsOn}" of "${id}"`)
    warnings.push(
      `dependency cycle ${cycle}: running every agent of this launch one after another, in launch order (one that fails fails those after it); dropped, as they name an agent that runs later: ${dropped.join(', ')}`,
    )
    edges = order.edges
    after = order.after
  }
  const toGlobal = (localId: string) => `${parent.id}.${localId}`
  const children = links.map((link, i) => ({
    link,
    spec: specs[i]!,
    dependsOn: (edges.get(link.localId) ?? []).map(toGlobal),
    runsAfter: (after.get(link.localId) ?? []).map(toGlobal),
    exists: registry.has(link.id),
  }))
  // Replayed after a restore: the children exist already (some of them, when a crash cut the
  // launch's writes off: only the others are created).
  const missing = children.filter((child) => !child.exists).length
  if (missing === 0) return { ok: true, children, warnings: [], existing: true }

  const limits = parent.limits
  if (specs.length > limits.maxChildrenPerLaunch) {
    return {
      ok: false,
      reason: `launch refused: ${specs.length} sub-agents requested, at most ${limits.maxChildrenPerLaunch} per launch (limit maxChildrenPerLaunch)`,
      limit: 'maxChildrenPerLaunch',
    }
  }
  if (parent.depth + 1 > limits.maxDepth) {
    return {
      ok: false,
      reason: `launch refused: sub-agents would be at depth ${parent.depth + 1}, the maximum depth is ${limits.maxDepth} (limit maxDepth)`,
      limit: 'maxDepth',
    }
  }
  const agents = registry.size + pending
  if (agents + missing > limits.maxAgents) {
    return {
      ok: false,
      reason: `launch refused: the run has ${agents} agents and ${missing} more would pass the maximum of ${limits.maxAgents} (limit maxAgents)`,
      limit: 'maxAgents',
    }
  }
  return { ok: true, children, warnings, existing: false }
}

/** Starts sub-agents for `parent`. Idempotent: a launch replayed after a restore finds its children. */
export async function launchChildren(
  run: LaunchHost,
  parent: AgentEntry,
  action: LaunchAction,
  signal: AbortSignal,
): Promise<LaunchOutcome> {
  const specs = action.agents
  const cycles = action.on_cycle ?? run.onCycle
  let plan = planLaunch(parent, specs, run.agents.entries, cycles, run.agents.pending)
  if (!plan.ok) return plan
  const segment = run.segment
  // A segment holds only the agents it loaded. A launch made again after a crash finds its
  // children in the store, where they may have run on; creating them again would reset them.
  if (segment && !plan.existing) {
    const unknown = plan.children.filter((child) => !child.exists).map((child) => child.link.id)
    if ((await run.agents.restoreRemote(unknown)) > 0) {
      plan = planLaunch(parent, specs, run.agents.entries, cycles, run.agents.pending)
      if (!plan.ok) return plan
    }
  }
  const links = plan.children.map((child) => child.link)
  if (plan.existing) return { ok: true, children: links }
  const context = parent.context
  for (const message of plan.warnings) run.emitAgent(context, { type: 'agent.warning', message })
  // Looked up before any child is made: an unknown agent throws with none of its siblings made.
  // Made and started higher priority first: the first free places go to them, as queued calls do.
  const created = plan.children
    .filter((child) => !child.exists)
    .map((child) => {
      const definition = run.agents.definition(child.link.agent)
      return { ...child, definition, priority: child.spec.priority ?? definition.priority ?? 0 }
    })
    .sort((a, b) => b.priority - a.priority)
  run.emitAgent(context, {
    type: 'agent.launched',
    children: created.map(({ link, dependsOn, runsAfter }) => ({
      id: link.id,
      agent: link.agent,
      task: link.task,
      dependsOn,
      ...(runsAfter.length > 0 && { runsAfter }),
    })),
  })
  const make = ({ link, spec, dependsOn, runsAfter, definition, priority }: (typeof created)[number]) =>
    run.agents.create({
      id: link.id,
      definition,
      task: link.task,
      parentId: parent.id,
      depth: parent.depth + 1,
      dependsOn,
      runsAfter,
      priority,
      timeoutMs: spec.timeout_ms ?? run.agents.limitsFor(definition).timeoutMs,
      fallback: 'fallback' in spec ? { value: spec.fallback } : (definition.fallback ?? null),
    })
  if (segment) {
    // Children of a segment run in other workers: stored idle, then scheduled by the host.
    const children = created.map(make)
    await Promise.all(children.map((child) => run.written(child)))
    for (const child of children) child.mode = 'remote'
    await segment.enqueue(children.map((child) => child.id))
    return { ok: true, children: links }
  }
  // The first chunk is made and started at once: its children are written and call their model
  // while the rest are made. The rest are made in one go (made a chunk per turn, at 50 ms a call
  // the first children's replies starved the launch), counted against `maxAgents` meanwhile, then
  // started a chunk per turn of the event loop. Started all together, 1,000 children's replies came
  // due at once and the last waited for all the others' steps. A child that depends on siblings
  // starts once all are made: it may name a later one, and it waits for them anyway.
  const children = created.slice(0, startChunk).map(make)
  const dependents: AgentEntry[] = []
  const start = (from: number) => {
    for (const child of children.slice(from, from + startChunk)) {
      if (awaitedAgents(child.context).length > 0) dependents.push(child)
      // Cancelled while this launch was making its siblings (by a listener of one of their events).
      else startOrCancel(run, child)
    }
  }
  start(0)
  const rest = created.length - children.length
  run.agents.pending += rest
  try {
    if (rest > 0) await nextTurn()
    if (signal.aborted) return abandon(run, parent, children)
    for (let index = children.length; index < created.length; index++) children.push(make(created[index]!))
  } finally {
    run.agents.pending -= rest
  }
  for (let from = startChunk; from < children.length; from += startChunk) {
    if (from > startChunk) await nextTurn()
    if (signal.aborted) return abandon(run, parent, children)
    start(from)
  }
  for (const child of dependents) startOrCancel(run, child)
  // The children are in the store before the parent's record says they were launched.
  await Promise.all(children.map((child) => run.written(child)))
  if (signal.aborted) return abandon(run, parent, children)
  return { ok: true, children: links }
}

/** Children a launch starts in one turn of the event loop. */
const startChunk = 50

function startOrCancel(run: LaunchHost, child: AgentEntry): void {
  const cancelled = run.cancelReason()
  if (cancelled !== undefined) run.failAgent(child, new CancelledError(cancelled))
  else run.startWhenReady(child)
}

/**
 * The parent ended while its launch was under way: its record will never list these children,
 * so nothing would end them or take their results. They end here.
 */
function abandon(run: LaunchHost, parent: AgentEntry, children: AgentEntry[]): LaunchOutcome {
  const ended = orphaned(parent.id)
  for (const child of children) run.failAgent(child, ended)
  return { ok: false, reason: ended.message }
}
