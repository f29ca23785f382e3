import type { ChildLink } from '../agent/context.js'
import { checkDependencies } from '../plan/dependency-graph.js'
import type { LaunchSpec } from '../protocol/actions.js'
import type { AgentEntry } from './agent-entry.js'

export type LaunchOutcome = { ok: true; children: ChildLink[] } | { ok: false; reason: string }

/** A child of the launch: its link, its dependencies as run-wide ids, and whether it exists already. */
export interface PlannedChild {
  link: ChildLink
  spec: LaunchSpec
  dependsOn: string[]
  /** Restored from the store: a launch replayed after a crash that cut it off. */
  exists: boolean
}

export type LaunchPlan =
  | { ok: true; children: PlannedChild[]; warnings: string[]; existing: boolean }
  | { ok: false; reason: string }

/**
 * Decides what a launch creates: ids, limits, dependencies. Pure apart from reading the
 * registry, so a refused launch changes nothing.
 */
export function planLaunch(
  parent: AgentEntry,
  specs: LaunchSpec[],
  registry: ReadonlyMap<string, AgentEntry>,
  onCycle: 'refuse' | 'sequential',
): LaunchPlan {
  const { context } = parent
  const taken = new Set(context.children.map((child) => child.localId))
  const links = specs.map((spec, index) => {
    const localId = spec.id ?? `${spec.agent}-${context.children.length + index + 1}`
    return { localId, id: `${parent.id}.${localId}`, agent: spec.agent, task: spec.task }
  })
  const collision = links.find((link) => taken.has(link.localId))
  if (collision)
    return { ok: false, reason: `id "${collision.localId}" is already used by another sub-agent` }

  const check = checkDependencies(
    links.map((link, i) => ({ id: link.localId, dependsOn: specs[i]!.depends_on ?? [] })),
    taken,
  )
  const warnings = check.dropped.map(
    ({ id, dependsOn }) => `depends_on "${dependsOn}" of "${id}" names no sibling; dropped`,
  )
  let edges = check.edges
  if (check.cycle) {
    const cycle = check.cycle.join(' → ')
    if (onCycle === 'refuse') {
      return {
        ok: false,
        reason: `launch refused: dependency cycle ${cycle}; remove one of these depends_on`,
      }
    }
    warnings.push(`dependency cycle ${cycle}: running these agents one after another, in launch order`)
    edges = new Map(links.map((link, i) => [link.localId, i === 0 ? [] : [links[i - 1]!.localId]]))
  }
  const toGlobal = (localId: string) => `${parent.id}.${localId}`
  const children = links.map((link, i) => ({
    link,
    spec: specs[i]!,
    dependsOn: (edges.get(link.localId) ?? []).map(toGlobal),
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
    }
  }
  if (parent.depth + 1 > limits.maxDepth) {
    return {
      ok: false,
      reason: `launch refused: sub-agents would be at depth ${parent.depth + 1}, the maximum depth is ${limits.maxDepth} (limit maxDepth)`,
    }
  }
  if (registry.size + missing > limits.maxAgents) {
    return {
      ok: false,
      reason: `launch refused: the run has ${registry.size} agents and ${missing} more would pass the maximum of ${limits.maxAgents} (limit maxAgents)`,
    }
  }
  return { ok: true, children, warnings, existing: false }
}
