// One measured run in a fresh process: a warm-up of the same code at a small size, then the
// job itself. The parent reads one JSON message back; peak RSS is the kernel's for this process.
import type { Contender, Job } from './contender.js'

export interface CellRequest {
  contender: ContenderName
  job: Job
}

export type ContenderName =
  | 'cohort'
  | 'promise-all'
  | 'xstate-parent'
  | 'xstate-independent'
  | 'xstate-agent'
  | 'langgraph'
  | 'langgraph-saver'

export interface CellResult {
  wallMs: number
  steps?: number
  writes?: number
  batches?: number
  /** Main-thread and other threads' CPU time of the process over the measured runs (user + system). */
  cpuMs?: number
  storeMs?: number
  snapshotMs?: number
  snapshotBytes?: number
  restoreMs?: number
  finishMs?: number
  agents?: number
  firstUs?: number
  lastUs?: number
  idleHeapBytes?: number
  idleRssBytes?: number
  peakRssBytes: number
}

async function load(name: ContenderName): Promise<Contender> {
  switch (name) {
    case 'cohort':
      return (await import('./cohort.js')).cohort
    case 'promise-all':
      return (await import('./peer-promise-all.js')).promiseAll
    case 'xstate-parent':
      return (await import('./peer-xstate.js')).xstateParent
    case 'xstate-independent':
      return (await import('./peer-xstate.js')).xstateIndependent
    case 'xstate-agent':
      return (await import('./peer-xstate.js')).xstateAgent
    case 'langgraph':
      return (await import('./peer-langgraph.js')).langGraph(false)
    case 'langgraph-saver':
      return (await import('./peer-langgraph.js')).langGraph(true)
  }
}

function collect(): void {
  const gc = (globalThis as { gc?: () => void }).gc
  if (!gc) throw new Error('run with --expose-gc')
  gc()
  gc()
}

/**
 * The same job at its own latency, with 1,000 agents (a tree of depth 10 for recursion), run
 * as often as `warmUpRuns` says before the measured one, so it runs on optimised code and a grown heap, as
 * a long-running server does. A single small run left every contender in the interpreter for
 * most of the measured run; warming up at 0 ms left the code paths of a model that takes time
 * cold; and a forced collection after the warm-up shrank the young generation, so the measured
 * run paid for growing it again (Cohort's fan-out of 1,000 × 3 × 50 ms: about 330 ms measured
 * that way, 265 ms in the steady state).
 */
function warmUp(job: Job): Job | undefined {
  switch (job.workload) {
    case 'fan-out':
      return { ...job, children: 1_000 }
    case 'recursion':
      return { ...job, depth: Math.min(job.depth, 10) }
    case 'persistence':
      return { ...job, agents: 1_000, rounds: 1 }
    // What the first run allocates once (compiled code, schemas, caches) is not a parked agent's:
    // a server that parks agents has paid it long before.
    case 'idle':
      return { ...job, agents: Math.min(job.agents, 1_000) }
    case 'history':
      return { ...job, turns: Math.min(job.turns, 50) }
    default:
      return undefined
  }
}

/**
 * Warm-up runs: at least three, then more until about a second has gone (ten at most). V8 was
 * still tiering up after three: Cohort's fan-out of 1,000 × 3 at 0 ms took 100, 100, 47, 48,
 * then 30–35 ms from the fifth run on; a contender whose run takes a second stops at three.
 */
const warmUpRuns = { min: 3, max: 10, budgetMs: 1_000 }

/**
 * A job smaller than its warm-up then runs itself this many times more (about 3,000 steps, 10
 * runs at most): right after the warm-up, a run of 100 agents was up to three times slower than
 * in its steady state (Cohort's fan-out of 100 × 3 at 0 ms: 131, 83, 56, then 33 to 46 µs a step;
 * a collection of the warm-up's garbage lands in a run that short).
 */
function ownSizeRuns(job: Job): number {
  if (job.workload !== 'fan-out' || job.children >= 1_000) return 0
  const runs = Math.min(10, Math.ceil(3_000 / (job.children * job.steps)))
  // A run at a long latency is mostly waiting: about 6 s of it is enough (4 runs at 3 × 500 ms).
  return job.latencyMs > 0 ? Math.min(runs, Math.ceil(6_000 / (job.steps * job.latencyMs))) : runs
}

/**
 * Runs of the job that are measured together, their wall time divided by their number: a fan-out
 * at 0 ms runs until it has taken about 30,000 steps, three runs at least and 100 at most. One
 * run of 100 × 3 takes 3 ms, and a scavenge that lands in it, or not, doubled the figure or
 * halved it. A single run of 1,000 × 3 (25 ms), the figure before, mostly missed the collections
 * of a process that runs one after another: the first run after the warm-up took 11–18 µs a
 * step where the ten after it took 15–19 on average (four processes), and five cells ranged over
 * 23–43 ms, so N = 1,000 looked cheaper a step than N = 100 and N = 10,000.
 */
function measuredRuns(job: Job): number {
  if (job.workload !== 'fan-out' || job.latencyMs > 0) return 1
  return Math.min(100, Math.max(3, Math.ceil(30_000 / (job.children * job.steps))))
}

async function runJob(contender: Contender, job: Job, result: Partial<CellResult>): Promise<void> {
  const missing = () => new Error(`this contender has no ${job.workload} workload`)
  switch (job.workload) {
    case 'fan-out':
      Object.assign(result, await contender.fanOut(job))
      return
    case 'recursion':
      if (!contender.recursion) throw missing()
      Object.assign(result, await contender.recursion(job))
      return
    case 'persistence': {
      if (!contender.persistence) throw missing()
      const total = { steps: 0, writes: 0, storeMs: 0 }
      for (let round = 0; round < (job.rounds ?? 1); round++) {
        const outcome = await contender.persistence(job)
        total.steps += outcome.steps
        total.writes += outcome.writes
        total.storeMs += outcome.storeMs
      }
      Object.assign(result, total)
      return
    }
    case 'restore':
      if (!contender.restore) throw missing()
      Object.assign(result, await contender.restore(job))
      return
    case 'history':
      if (!contender.history) throw missing()
      Object.assign(result, await contender.history(job))
      return
    case 'idle': {
      if (!contender.idle) throw missing()
      collect()
      const heapBefore = process.memoryUsage().heapUsed
      const rssBefore = process.memoryUsage.rss()
      await contender.idle(job, async () => {
        collect()
        result.idleHeapBytes = process.memoryUsage().heapUsed - heapBefore
        result.idleRssBytes = process.memoryUsage.rss() - rssBefore
      })
      return
    }
  }
}

export async function runCell(request: CellRequest): Promise<CellResult> {
  const contender = await load(request.contender)
  let result: CellResult
  try {
    result = await measureCell(contender, request)
  } catch (error) {
    // The cell's own error is the one to report; closing after it may fail for the same reason.
    await contender.close?.().catch(() => {})
    throw error
  }
  await contender.close?.()
  return result
}

async function measureCell(contender: Contender, request: CellRequest): Promise<CellResult> {
  const warm = warmUp(request.job)
  if (warm) {
    const warmStarted = performance.now()
    for (let run = 0; run < warmUpRuns.max; run++) {
      if (run >= warmUpRuns.min && performance.now() - warmStarted >= warmUpRuns.budgetMs) break
      await runJob(contender, warm, {})
    }
  }
  for (let run = 0; run < ownSizeRuns(request.job); run++) await runJob(contender, request.job, {})
  const result: Partial<CellResult> = {}
  const runs = measuredRuns(request.job)
  const cpu = process.cpuUsage()
  const started = performance.now()
  for (let run = 0; run < runs; run++) await runJob(contender, request.job, result)
  result.wallMs = (performance.now() - started) / runs
  const used = process.cpuUsage(cpu)
  result.cpuMs = (used.user + used.system) / 1000 / runs
  result.peakRssBytes = process.resourceUsage().maxRSS * 1024
  return result as CellResult
}

if (process.argv[2] === '--cell') {
  const request = JSON.parse(process.argv[3]!) as CellRequest
  runCell(request).then(
    (result) => {
      process.send?.({ ok: true, result })
      if (!process.send) console.log(JSON.stringify(result))
      process.exit(0)
    },
    (error: unknown) => {
      const message = error instanceof Error ? (error.stack ?? error.message) : String(error)
      process.send?.({ ok: false, error: message })
      if (!process.send) console.error(message)
      process.exit(1)
    },
  )
}
