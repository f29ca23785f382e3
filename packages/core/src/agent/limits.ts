import { z } from 'zod'
import { InvalidInputError } from '../errors.js'

/** Limits of one agent. */
export interface AgentLimits {
  /** Model calls one agent may make. */
  maxSteps: number
  /** Consecutive unusable replies answered with a repair message before the agent fails. */
  maxRepairs: number
  /** Children one `launch_subagents` may start. */
  maxChildrenPerLaunch: number
  /**
   * Wall-clock time from start to settlement, in ms; the agent fails with `TimeoutError` past it.
   * The time its run was stopped (detached, or down after a crash) is not counted.
   */
  timeoutMs: number | null
  /** Tokens (prompt + completion) one agent may use. */
  maxAgentTokens: number | null
}

/** Limits of a run, plus the defaults for its agents. */
export interface RunLimits extends AgentLimits {
  /** Deepest agent allowed; the root agent is at depth 0. */
  maxDepth: number
  /** Agents in one run, the root included. */
  maxAgents: number
  /** Tokens all agents of a run may use together. */
  maxRunTokens: number | null
}

export const defaultLimits: RunLimits = {
  maxSteps: 50,
  maxRepairs: 3,
  maxChildrenPerLaunch: 20,
  maxDepth: 5,
  maxAgents: 200,
  timeoutMs: null,
  maxAgentTokens: null,
  maxRunTokens: null,
}

/** The longest a timer waits: Node fires a longer one at once (about 24.8 days, 2³¹ − 1 ms). */
export const maxTimeoutMs = 2_147_483_647

const count = z.number().int().min(0)
// Its own schema, not `count.min(1)`: that checks >= 0 first, and -1 would be told "expected >=0".
const positiveCount = z.number().int().min(1)
const limitsSchema = z
  .object({
    maxSteps: positiveCount,
    maxRepairs: count,
    maxChildrenPerLaunch: positiveCount,
    maxDepth: count,
    maxAgents: positiveCount,
    timeoutMs: z.number().positive().max(maxTimeoutMs).nullable(),
    maxAgentTokens: count.nullable(),
    maxRunTokens: count.nullable(),
  })
  .partial()
  .strict()

export function resolveLimits(...layers: (Partial<RunLimits> | undefined)[]): RunLimits {
  const merged: RunLimits = { ...defaultLimits }
  for (const layer of layers) if (layer) Object.assign(merged, checkLimits(layer))
  return merged
}

/** One layer of limits, checked; `owner` names where they were given (`of agent "worker"`). */
export function checkLimits(layer: Partial<RunLimits>, owner?: string): z.output<typeof limitsSchema> {
  const parsed = limitsSchema.safeParse(layer)
  if (parsed.success) return parsed.data
  const issue = parsed.error.issues[0]
  throw new InvalidInputError(
    `invalid limits${owner ? ` ${owner}` : ''}: ${issue?.path.join('.') || '(root)'}: ${issue?.message}; expected ${Object.keys(defaultLimits).join(', ')} as whole numbers (maxSteps, maxChildrenPerLaunch and maxAgents at least 1; timeoutMs above 0, in ms, at most ${maxTimeoutMs}) or null for no limit`,
  )
}
