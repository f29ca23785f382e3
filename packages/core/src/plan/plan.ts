import { z } from 'zod'
import { maxTimeoutMs } from '../agent/limits.js'
import { describeValue, InvalidInputError } from '../errors.js'
import { childIdPattern, type LaunchSpec } from '../protocol/actions.js'
import { checkDependencies, dependencyLayers, describeCycle } from './dependency-graph.js'

/** One agent of a plan: a launch spec with an id, naming the steps it depends on by their ids. */
export type PlanStep = Omit<LaunchSpec, 'depends_on'> & { id: string; depends_on?: string[] }

/** A plan given as data: agents with `depends_on`, run without a coordinator model. */
export interface Plan {
  agents: PlanStep[]
  /** What to do with a dependency cycle: refuse the plan (default) or run in the given order. */
  onCycle?: 'refuse' | 'sequential'
}

const jsonValue = z.json()

const stepSchema = z.object({
  id: z.string().regex(childIdPattern, 'expected 1-48 letters, digits, "_" or "-"'),
  agent: z.string().min(1),
  task: z.string().min(1),
  // A model's launch may name a sibling by its position; a plan's steps are named by id only.
  depends_on: z
    .array(
      z.string({
        error: (issue) =>
          `expected the id of another step, got ${describeValue(issue.input)}: a plan names the steps it depends on by their id, not by position`,
      }),
    )
    .optional(),
  priority: z.number().optional(),
  timeout_ms: z.number().positive().max(maxTimeoutMs).optional(),
  // The plan is stored as the JSON text of its root's task: what JSON cannot hold is refused here.
  fallback: z
    .unknown()
    .refine(
      (value) => jsonValue.safeParse(value).success,
      'expected a JSON value (no BigInt, Map, Set, Date, class instance, undefined, NaN or Infinity)',
    )
    .optional(),
})

export const planSchema = z.object({
  agents: z.array(stepSchema).min(1),
  onCycle: z.enum(['refuse', 'sequential']).optional(),
})

/** Validates a plan from outside (code, a config file, an HTTP body). */
export function parsePlan(input: unknown): Plan {
  const checked = planSchema.safeParse(input)
  if (!checked.success) {
    const issue = checked.error.issues[0]!
    throw new InvalidInputError(`invalid plan: ${issue.path.join('.') || '(root)'}: ${issue.message}`)
  }
  const plan = checked.data as Plan
  const seen = new Set<string>()
  for (const step of plan.agents) {
    if (seen.has(step.id)) throw new InvalidInputError(`invalid plan: id "${step.id}" is used twice`)
    seen.add(step.id)
  }
  return plan
}

/**
 * The plan's layers, for display: which agents can run side by side. A cycle is an error, as
 * `runPlan` refuses it, unless `onCycle` is 'sequential' (one agent a layer, in plan order, as
 * they run; each is handed the results of its `depends_on` before it, see `sequentialOrder`).
 */
export function planLayers(input: Plan): string[][] {
  // Checked as runPlan checks it: an id used twice, a step of the wrong shape.
  const plan = parsePlan(input)
  const check = checkDependencies(
    plan.agents.map((step) => ({ id: step.id, dependsOn: step.depends_on ?? [] })),
    new Set(),
  )
  if (check.cycle) {
    if (plan.onCycle === 'sequential') return plan.agents.map((step) => [step.id])
    throw new InvalidInputError(
      `invalid plan: ${describeCycle(check.cycle)}; remove one of these depends_on, or set onCycle: 'sequential'`,
    )
  }
  return dependencyLayers(check.edges)
}
