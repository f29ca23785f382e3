import type { AgentStatus } from '../agent/context.js'
import type { RunRecord, RunStatus } from '../persistence/records.js'
import type { Conflict } from '../workspaces/workspaces.js'
import type { AgentEntry } from './agent-entry.js'

/** Counts agents busy in a model call or a tool right now, and the peak. */
export class BusyTracker {
  now = 0
  peak = 0
  begin(): void {
    this.now++
    if (this.now > this.peak) this.peak = this.now
  }
  end(): void {
    this.now--
  }
}

export interface AgentMetrics {
  id: string
  name: string
  status: AgentStatus
  depth: number
  startedAt: number
  endedAt: number | null
  /** Start to settlement (or to now), in ms. */
  durationMs: number
  /** Time in model calls and tools, in ms. */
  busyMs: number
  turns: number
  tokens: number
  cost: number
  retries: number
  error?: string
}

/** What a runtime adds up over its runs. */
export interface RunTotals {
  agents: number
  completed: number
  failed: number
  /** Agents failed by their wall-clock limit (`timeoutMs`); they count among `errors` too. */
  timeouts: number
  /** Agents failed for any reason but a cancel: timeouts, model errors, limits, tools. */
  errors: number
  retries: number
  tokens: { prompt: number; completion: number; total: number }
  cost: number
}

export interface RunMetrics extends RunTotals {
  runId: string
  status: RunStatus
  /** The time the run was running, over every process that ran it (`runWallMs`). */
  wallMs: number
  /** Summed busy time of every agent. */
  busyMs: number
  /** busyMs ÷ wallMs: how many agents' worth of work ran at once, on average. */
  speedup: number
  /** speedup ÷ the peak number of agents busy at once (1 = every busy slot used all along). */
  efficiency: number
  peakParallelism: number
  /** Files changed by more than one agent of a parallel group. */
  conflicts: Conflict[]
  perAgent: AgentMetrics[]
}

/**
 * A run's totals, counted in one pass with nothing built per agent: a runtime adds them up as
 * each run settles, before the run's caller goes on, where the full metrics of 1,000 agents took
 * about 0.8 ms.
 */
export function runTotals(entries: Iterable<AgentEntry>): RunTotals {
  let agents = 0
  let completed = 0
  let failed = 0
  let timeouts = 0
  let errors = 0
  let retries = 0
  let prompt = 0
  let completion = 0
  let cost = 0
  for (const entry of entries) {
    const { context } = entry
    agents++
    const status = entry.status
    if (status === 'completed') completed++
    else if (status === 'failed') {
      failed++
      const code = context.error?.code
      if (code?.startsWith('TIMEOUT')) timeouts++
      if (!code?.startsWith('CANCELLED')) errors++
    }
    retries += context.retries
    prompt += context.usage.promptTokens
    completion += context.usage.completionTokens
    cost += context.usage.cost
  }
  return {
    agents,
    completed,
    failed,
    timeouts,
    errors,
    retries,
    tokens: { prompt, completion, total: prompt + completion },
    cost,
  }
}

/** The time a run's agents were at work (model and tool calls), summed, in ms. */
export function runBusyMs(entries: Iterable<AgentEntry>): number {
  let busy = 0
  for (const entry of entries) busy += entry.context.busyMs
  return busy
}

/**
 * A run's wall time: from its start to its end (or `now`), leaving out the time it was stopped
 * (from each `detach` to the `resume` after it). Read from the record alone, so any process gets the
 * same figure. A process that crashed has no end of its own: its time until the resume counts.
 */
export function runWallMs(record: RunRecord, now = Date.now()): number {
  const end = record.status !== 'running' ? record.updatedAt : (record.detachedAt ?? now)
  return Math.max(1, end - record.createdAt - (record.stoppedMs ?? 0))
}

/** The record of a run stopped by `detach` at `at` (epoch ms), with the peak parallelism so far. */
export function detachedRecord(record: RunRecord, at: number, peak: number): RunRecord {
  return withPeak({ ...record, detachedAt: at }, peak)
}

/** `record` with `peak` as its peak parallelism, when it is more than the stored one. */
export function withPeak(record: RunRecord, peak: number): RunRecord {
  if (peak <= (record.peakParallelism ?? 0)) return record
  return { ...record, peakParallelism: peak }
}

/** The record of a detached run resumed at `at`: the time it was stopped joins `stoppedMs`. */
export function resumedRecord(record: RunRecord, at: number): RunRecord {
  const { detachedAt, ...running } = record
  if (detachedAt === undefined) return record
  // Another machine's clock may be behind the one that detached: a stop is never negative.
  return { ...running, stoppedMs: (record.stoppedMs ?? 0) + Math.max(0, at - detachedAt) }
}

/** Metrics of a run, computed from its agents' contexts (they survive a restore). */
export function computeRunMetrics(
  runId: string,
  status: RunStatus,
  wallMs: number,
  entries: Iterable<AgentEntry>,
  peakBusy: number,
): RunMetrics {
  const now = Date.now()
  const perAgent: AgentMetrics[] = []
  const conflicts: Conflict[] = []
  const all: AgentEntry[] = []
  for (const entry of entries) {
    all.push(entry)
    const { context } = entry
    conflicts.push(...context.conflicts)
    const metrics: AgentMetrics = {
      id: entry.id,
      name: entry.definition.name,
      status: entry.status,
      depth: entry.depth,
      startedAt: context.startedAt,
      endedAt: context.endedAt,
      durationMs: (context.endedAt ?? now) - context.startedAt,
      busyMs: Math.round(context.busyMs),
      turns: context.turn,
      tokens: context.usage.promptTokens + context.usage.completionTokens,
      cost: context.usage.cost,
      retries: context.retries,
    }
    if (context.error) metrics.error = `${context.error.code}: ${context.error.message}`
    perAgent.push(metrics)
  }
  const busyMs = perAgent.reduce((sum, agent) => sum + agent.busyMs, 0)
  const speedup = busyMs / wallMs
  return {
    runId,
    status,
    wallMs,
    busyMs,
    speedup: round(speedup),
    efficiency: round(peakBusy > 0 ? Math.min(1, speedup / peakBusy) : 0),
    peakParallelism: peakBusy,
    ...runTotals(all),
    conflicts,
    perAgent,
  }
}

function round(value: number): number {
  return Math.round(value * 100) / 100
}
