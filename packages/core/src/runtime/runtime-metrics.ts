import type { RunTotals } from '../orchestrator/metrics.js'
import type { RunStatus } from '../persistence/records.js'
import type { Scheduler, SchedulerStats } from '../scheduler/scheduler.js'

/** One run that ended in this process, as `RuntimeMetrics.history` keeps it. */
export interface EndedRun {
  runId: string
  status: Exclude<RunStatus, 'running'>
  endedAt: number
  wallMs: number
  /** Its agents' busy time ÷ its wall time. */
  speedup: number
  agents: number
  timeouts: number
  errors: number
  tokens: number
  cost: number
}

/** Runs `RuntimeMetrics.history` keeps: a server runs for months. */
export const historyLength = 100

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
  /** Timeouts and errors (timeouts included) as a share of the agents counted; 0 without agents. */
  timeoutRate: number
  errorRate: number
  /** The mean speedup of the runs that ended in this process (0 before the first). */
  averageSpeedup: number
  /** The last runs that ended in this process (at most 100), oldest first. */
  history: EndedRun[]
}

/** What the runs that ended in this process added up to; the live ones are added when asked. */
export type RuntimeTotals = Omit<
  RuntimeMetrics,
  'modelCalls' | 'runs' | 'timeoutRate' | 'errorRate' | 'averageSpeedup'
> & {
  runs: Omit<RuntimeMetrics['runs'], 'active'>
  /** The sum of the ended runs' speedups, for their mean. */
  speedups: number
}

export function newTotals(): RuntimeTotals {
  return {
    runs: { completed: 0, failed: 0, cancelled: 0 },
    agents: 0,
    timeouts: 0,
    errors: 0,
    retries: 0,
    tokens: 0,
    cost: 0,
    speedups: 0,
    history: [],
  }
}

export function addTotals(
  totals: RuntimeTotals,
  ended: { runId: string; status: Exclude<RunStatus, 'running'>; wallMs: number; busyMs: number },
  metrics: RunTotals,
): void {
  const { runId, status, wallMs, busyMs } = ended
  const speedup = Math.round((busyMs / Math.max(1, wallMs)) * 100) / 100
  totals.speedups += speedup
  totals.history.push({
    runId,
    status,
    endedAt: Date.now(),
    wallMs,
    speedup,
    agents: metrics.agents,
    timeouts: metrics.timeouts,
    errors: metrics.errors,
    tokens: metrics.tokens.total,
    cost: metrics.cost,
  })
  if (totals.history.length > historyLength) totals.history.shift()
  totals.runs[status]++
  totals.agents += metrics.agents
  totals.timeouts += metrics.timeouts
  totals.errors += metrics.errors
  totals.retries += metrics.retries
  totals.tokens += metrics.tokens.total
  totals.cost += metrics.cost
}

/** The totals of the ended runs, those of the live ones (`runTotals` of each), and the scheduler's now. */
export function runtimeMetrics(
  totals: RuntimeTotals,
  live: RunTotals[],
  scheduler: Scheduler,
): RuntimeMetrics {
  const sum = (pick: (m: RunTotals) => number) => live.reduce((total, m) => total + pick(m), 0)
  const agents = totals.agents + sum((m) => m.agents)
  const timeouts = totals.timeouts + sum((m) => m.timeouts)
  const errors = totals.errors + sum((m) => m.errors)
  const ended = totals.runs.completed + totals.runs.failed + totals.runs.cancelled
  const share = (count: number) => (agents === 0 ? 0 : Math.round((count / agents) * 1000) / 1000)
  return {
    runs: { active: live.length, ...totals.runs },
    modelCalls: scheduler.stats(),
    ...(scheduler.agents && { atWork: { ...scheduler.agents.stats, limit: scheduler.agents.limit } }),
    agents,
    timeouts,
    errors,
    retries: totals.retries + sum((m) => m.retries),
    tokens: totals.tokens + sum((m) => m.tokens.total),
    cost: totals.cost + sum((m) => m.cost),
    timeoutRate: share(timeouts),
    errorRate: share(errors),
    averageSpeedup: ended === 0 ? 0 : Math.round((totals.speedups / ended) * 100) / 100,
    history: [...totals.history],
  }
}
