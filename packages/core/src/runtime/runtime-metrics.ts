import type { RunTotals } from '../orchestrator/metrics.js'
import type { RunStatus } from '../persistence/records.js'
import type { Scheduler, SchedulerStats } from '../scheduler/scheduler.js'

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
}

/** What the runs that ended in this process added up to; the live ones are added when asked. */
export type RuntimeTotals = Omit<RuntimeMetrics, 'modelCalls' | 'runs'> & {
  runs: Omit<RuntimeMetrics['runs'], 'active'>
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
  }
}

export function addTotals(
  totals: RuntimeTotals,
  status: Exclude<RunStatus, 'running'>,
  metrics: RunTotals,
): void {
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
  return {
    runs: { active: live.length, ...totals.runs },
    modelCalls: scheduler.stats(),
    ...(scheduler.agents && { atWork: { ...scheduler.agents.stats, limit: scheduler.agents.limit } }),
    agents: totals.agents + sum((m) => m.agents),
    timeouts: totals.timeouts + sum((m) => m.timeouts),
    errors: totals.errors + sum((m) => m.errors),
    retries: totals.retries + sum((m) => m.retries),
    tokens: totals.tokens + sum((m) => m.tokens.total),
    cost: totals.cost + sum((m) => m.cost),
  }
}
