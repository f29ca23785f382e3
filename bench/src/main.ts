// Runs every workload on every contender, each measurement in a fresh process, contenders
// interleaved within each repetition; writes results/latest.md and results/latest.json (a quick
// or partial run: results/partial.md and partial.json, so the committed tables stay).
//
//   pnpm bench                   full run (N up to 10,000, 5 repetitions)
//   pnpm bench --quick           N up to 1,000, 3 repetitions
//   pnpm bench --reps 7 --only fan-out
import { execSync, fork } from 'node:child_process'
import { mkdir, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import type { CellRequest, CellResult, ContenderName } from './cell.js'
import type { Job } from './contender.js'

type Workload = Job['workload']
const workloads: Workload[] = ['fan-out', 'recursion', 'persistence', 'history', 'restore', 'idle']

interface Options {
  quick: boolean
  reps: number
  only: Workload[] | undefined
}

function parseArgs(argv: string[]): Options {
  const options: Options = { quick: false, reps: 5, only: undefined }
  let repsGiven = false
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]
    if (arg === '--') continue
    if (arg === '--quick') options.quick = true
    else if (arg === '--reps') {
      options.reps = Number(argv[++i])
      repsGiven = true
      if (!Number.isInteger(options.reps) || options.reps < 1)
        throw new Error('--reps expects a positive integer')
    } else if (arg === '--only') {
      const names = (argv[++i] ?? '').split(',') as Workload[]
      for (const name of names) {
        if (!workloads.includes(name))
          throw new Error(`--only expects one of ${workloads.join(', ')}; got ${name}`)
      }
      options.only = names
    } else throw new Error(`unknown argument ${arg}; expected --quick, --reps <n>, --only <workload>`)
  }
  if (options.quick && !repsGiven) options.reps = 3
  return options
}

/** One row of a table: a job, and the contenders that run it. */
interface Group {
  id: string
  job: Job
  contenders: ContenderName[]
}

/** A cell's outcome over the repetitions. */
interface Measured {
  group: string
  contender: ContenderName
  job: Job
  skipped?: string
  errors: string[]
  samples: CellResult[]
}

const peers: ContenderName[] = [
  'promise-all',
  'cohort',
  'xstate-parent',
  'xstate-independent',
  'xstate-agent',
  'langgraph',
  'langgraph-saver',
]
const steps = 3
const durableLatencyMs = 500
/** The long-history workload: one agent's turns, and the length of each tool result it reads. */
const historyTurns = 300
const historyResultBytes = 2_000

function durableGroup(children: number, store: 'memory' | 'postgres'): string {
  return `durable fan-out ${children}x${steps}x${durableLatencyMs}ms ${store}`
}

function plan(options: Options): Group[] {
  const big = options.quick ? 1_000 : 10_000
  const sizes = options.quick ? [10, 100, 1_000] : [10, 100, 1_000, 10_000]
  const groups: Group[] = []
  for (const latencyMs of [0, 50]) {
    for (const children of sizes) {
      groups.push({
        id: `fan-out ${children}x${steps}x${latencyMs}ms`,
        job: { workload: 'fan-out', children, steps, latencyMs },
        contenders: peers,
      })
    }
  }
  if (options.quick) {
    // The step at 0 ms is compared with XState's independent actors up to N = 10,000 in every mode.
    groups.push({
      id: `fan-out 10000x${steps}x0ms`,
      job: { workload: 'fan-out', children: 10_000, steps, latencyMs: 0 },
      contenders: ['promise-all', 'cohort', 'xstate-independent', 'xstate-agent'],
    })
  }
  // Every step written before the effects that depend on it (`durability: 'sync'`), writes counted.
  for (const [children, store] of [
    [100, 'memory'],
    [1_000, 'memory'],
    [1_000, 'postgres'],
  ] as const) {
    groups.push({
      id: durableGroup(children, store),
      job: { workload: 'fan-out', children, steps, latencyMs: durableLatencyMs, store },
      contenders:
        store === 'memory' ? ['promise-all', 'cohort', 'xstate-independent', 'xstate-agent'] : ['cohort'],
    })
  }
  groups.push({
    id: 'recursion depth 10 x10ms',
    job: { workload: 'recursion', depth: 10, latencyMs: 10 },
    contenders: ['promise-all', 'cohort', 'xstate-parent'],
  })
  for (const agents of [10, big]) {
    // A small run is repeated in the cell until it has taken about 3,000 steps.
    const rounds = Math.max(1, Math.round(3_000 / (agents * steps)))
    for (const store of ['none', 'memory', 'file'] as const) {
      groups.push({
        id: `persistence ${agents} agents ${store}`,
        job: { workload: 'persistence', agents, steps, store, rounds },
        contenders:
          store === 'memory' ? ['promise-all', 'cohort', 'xstate-parent', 'xstate-independent'] : ['cohort'],
      })
    }
  }
  for (const store of ['memory', 'file', 'postgres'] as const) {
    groups.push({
      id: `history ${historyTurns} turns ${store}`,
      job: { workload: 'history', turns: historyTurns, resultBytes: historyResultBytes, store },
      contenders: ['cohort'],
    })
  }
  groups.push({
    id: 'restore 1000 agents',
    job: { workload: 'restore', agents: 1_000, steps, latencyMs: 50 },
    contenders: ['cohort'],
  })
  groups.push({
    id: `idle ${big} agents`,
    job: { workload: 'idle', agents: big },
    contenders: ['promise-all', 'cohort', 'xstate-parent', 'xstate-independent'],
  })
  return groups.filter((group) => !options.only || options.only.includes(group.job.workload))
}

/** Combinations measured to take well over a minute per cell on a 2-CPU machine. */
function skipReason(contender: ContenderName, job: Job): string | undefined {
  if (job.workload === 'fan-out' && job.children >= 10_000) {
    if (contender === 'xstate-parent')
      return 'skipped: est. > 60 s (spawning into one parent grows quadratically: 0.07 s at N=100, 1.9 s at N=1,000)'
    if (contender === 'langgraph' || contender === 'langgraph-saver')
      return 'skipped: > 60 s (superlinear in N: ~1.3 s at N=1,000, 137 s measured once at N=10,000, 0 ms)'
  }
  if (job.workload === 'persistence' && job.agents >= 10_000 && contender === 'xstate-parent')
    return 'skipped: est. > 60 s (each write is the whole run, and spawning is quadratic)'
  if (job.workload === 'idle' && job.agents >= 10_000 && contender === 'xstate-parent')
    return 'skipped: est. > 60 s (spawning into one parent grows quadratically)'
  return undefined
}

const here = path.dirname(fileURLToPath(import.meta.url))
const benchDir = path.resolve(here, '..')
const cellTimeoutMs = 180_000

/** Runs one job in a fresh Node process (tsx loader for the bench's own files, exposed gc). */
function runCell(request: CellRequest): Promise<CellResult> {
  return new Promise((resolve, reject) => {
    const child = fork(path.join(here, 'cell.ts'), ['--cell', JSON.stringify(request)], {
      cwd: benchDir,
      // The built @cohort/core (dist), as users run it: not the TypeScript source through tsx.
      execArgv: ['--import', 'tsx', '--expose-gc'],
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    })
    let stderr = ''
    let settled = false
    const finish = (outcome: () => void) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      outcome()
    }
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      finish(() => reject(new Error(`timed out after ${cellTimeoutMs / 1000} s`)))
    }, cellTimeoutMs)
    child.stderr?.on('data', (chunk: Buffer) => {
      stderr += chunk.toString()
    })
    child.on('message', (message: { ok: boolean; result?: CellResult; error?: string }) => {
      finish(() => (message.ok ? resolve(message.result!) : reject(new Error(message.error))))
    })
    child.on('exit', (code) => {
      finish(() =>
        reject(new Error(`cell exited with ${code}: ${stderr.trim().split('\n').slice(-3).join(' | ')}`)),
      )
    })
  })
}

// ---------------------------------------------------------------- statistics and formatting

interface Stat {
  median: number
  min: number
  max: number
}

function stat(values: number[]): Stat | undefined {
  const sorted = values.filter((value) => Number.isFinite(value)).sort((a, b) => a - b)
  if (sorted.length === 0) return undefined
  const mid = sorted.length >> 1
  const median = sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
  return { median, min: sorted[0]!, max: sorted.at(-1)! }
}

function digits(value: number): string {
  const abs = Math.abs(value)
  if (abs >= 100) return value.toLocaleString('en-US', { maximumFractionDigits: 0 })
  if (abs >= 10) return value.toFixed(1)
  if (abs >= 1) return value.toFixed(2)
  return value.toFixed(3)
}

function show(value: Stat | undefined, scale = 1): string {
  if (!value) return '–'
  return `${digits(value.median * scale)} (${digits(value.min * scale)}–${digits(value.max * scale)})`
}

const mb = 1 / (1024 * 1024)

function table(header: string[], rows: string[][]): string {
  const line = (cells: string[]) => `| ${cells.join(' | ')} |`
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n')
}

// ---------------------------------------------------------------- report

interface Target {
  name: string
  value: string
  met: boolean | undefined
}

interface Report {
  markdown: string
  targets: Target[]
}

/** A line of issue #22: its target beside the measured value. */
interface IssueTarget extends Target {
  goal: string
}

function find(results: Measured[], group: string, contender: ContenderName): Measured | undefined {
  return results.find((result) => result.group === group && result.contender === contender)
}

function metric(
  measured: Measured | undefined,
  pick: (result: CellResult) => number | undefined,
): Stat | undefined {
  if (!measured) return undefined
  return stat(measured.samples.map((sample) => pick(sample) ?? Number.NaN))
}

/** What a cell that has no numbers shows. */
/**
 * One table row per contender measured in `group`: its leading cells, then `cells` of its
 * numbers, or the reason it has none (skipped, failed) with the other `columns` left blank.
 */
function contenderRows(
  results: Measured[],
  group: Group,
  columns: number,
  head: (contender: ContenderName) => string[],
  cells: (measured: Measured, contender: ContenderName) => string[],
): string[][] {
  const rows: string[][] = []
  for (const contender of group.contenders) {
    const measured = find(results, group.id, contender)
    if (!measured) continue
    const failed = status(measured)
    rows.push([
      ...head(contender),
      ...(failed ? [failed, ...Array(columns - 1).fill('')] : cells(measured, contender)),
    ])
  }
  return rows
}

function status(measured: Measured): string | undefined {
  if (measured.skipped) return measured.skipped
  if (measured.samples.length === 0)
    return `failed: ${measured.errors[0]?.split('\n')[0]?.slice(0, 160) ?? 'no result'}`
  return undefined
}

function ratio(value: Stat | undefined, base: Stat | undefined): string {
  if (!value || !base || base.median === 0) return '–'
  return `${digits(value.median / base.median)}×`
}

/**
 * How much a per-step cost grew from the small run to the large one. A Δ wall is a difference of
 * two medians: at or below zero the store's cost is within the noise of the run without writes,
 * and a ratio of it would mean nothing (none at the large size is no growth; none at the small
 * size and some at the large is unbounded growth).
 */
function growth(small: number, large: number): number {
  if (large <= 0) return 0
  return small <= 0 ? Number.POSITIVE_INFINITY : large / small
}

function report(groups: Group[], results: Measured[], options: Options): Report {
  const parts: string[] = []
  const targets: Target[] = []

  const fanOut = groups.filter((group) => group.job.workload === 'fan-out' && !group.job.store)
  if (fanOut.length > 0) {
    parts.push('## Fan-out', '')
    parts.push(
      'One parent, N children, K = 3 model steps each. Wall time is median (min–max) over the repetitions; ' +
        "× baseline is the median wall time over Promise.all's. Ideal is the critical path K × latency; " +
        'µs/step is wall / (N × K) for the 0 ms runs.',
      '',
    )
    const rows: string[][] = []
    for (const group of fanOut) {
      const job = group.job as Extract<Job, { workload: 'fan-out' }>
      const base = metric(find(results, group.id, 'promise-all'), (r) => r.wallMs)
      const ideal = job.steps * job.latencyMs
      const head = (contender: ContenderName) => [String(job.children), `${job.latencyMs} ms`, contender]
      const cells = (measured: Measured) => {
        const wall = metric(measured, (r) => r.wallMs)
        const efficiency = ideal > 0 ? metric(measured, (r) => ideal / r.wallMs) : undefined
        const perStep =
          job.latencyMs === 0
            ? metric(measured, (r) => (r.wallMs * 1000) / (job.children * job.steps))
            : undefined
        return [
          show(wall),
          ratio(wall, base),
          efficiency ? show(efficiency) : '–',
          perStep ? show(perStep) : '–',
          show(
            metric(measured, (r) => r.peakRssBytes),
            mb,
          ),
        ]
      }
      rows.push(...contenderRows(results, group, 5, head, cells))
    }
    parts.push(
      table(
        ['N', 'latency', 'contender', 'wall ms', '× baseline', 'efficiency', 'µs/step', 'peak RSS MB'],
        rows,
      ),
      '',
    )
    const efficiencyAt = (children: number) => {
      const measured = find(results, `fan-out ${children}x${steps}x50ms`, 'cohort')
      return metric(measured, (r) => (steps * 50) / r.wallMs)
    }
    for (const [children, goal] of [
      [1_000, 0.85],
      [100, 0.95],
    ] as const) {
      const value = efficiencyAt(children)
      targets.push({
        name: `fan-out ${children.toLocaleString('en-US')}×3×50 ms efficiency ≥ ${goal}`,
        value: value ? digits(value.median) : 'not measured',
        met: value ? value.median >= goal : undefined,
      })
    }
    const perStep = [100, 1_000, 10_000].map((children) => ({
      children,
      value: metric(
        find(results, `fan-out ${children}x${steps}x0ms`, 'cohort'),
        (r) => (r.wallMs * 1000) / (children * steps),
      ),
    }))
    const measuredSteps = perStep.filter((entry) => entry.value)
    const worst = Math.max(...measuredSteps.map((entry) => entry.value!.median))
    const best = Math.min(...measuredSteps.map((entry) => entry.value!.median))
    const listing = perStep
      .map((entry) => `${entry.children}: ${entry.value ? digits(entry.value.median) : '–'}`)
      .join(', ')
    targets.push({
      name: 'per-step overhead ≤ 60 µs (N = 100 … 10,000, 0 ms)',
      value: `${listing} µs`,
      met: measuredSteps.length > 0 ? worst <= 60 : undefined,
    })
    targets.push({
      name: `per-step overhead flat within 1.3× from N = 100 to ${measuredSteps.at(-1)?.children.toLocaleString('en-US') ?? '10,000'}`,
      value: measuredSteps.length > 1 ? `${digits(worst / best)}×` : 'not measured',
      met: measuredSteps.length > 1 ? worst / best <= 1.3 : undefined,
    })
  }

  const recursion = groups.filter((group) => group.job.workload === 'recursion')
  for (const group of recursion) {
    const job = group.job as Extract<Job, { workload: 'recursion' }>
    const ideal = (2 * job.depth - 1) * job.latencyMs
    parts.push('## Recursion', '')
    parts.push(
      `Binary tree of depth ${job.depth} (${2 ** job.depth - 1} agents), ${job.latencyMs} ms per model step; an inner node ` +
        `calls the model, launches two children, waits, and calls it again. Ideal (critical path) = ${ideal} ms.`,
      '',
    )
    const base = metric(find(results, group.id, 'promise-all'), (r) => r.wallMs)
    const rows = contenderRows(
      results,
      group,
      4,
      (contender) => [contender],
      (measured) => {
        const wall = metric(measured, (r) => r.wallMs)
        return [
          show(wall),
          ratio(wall, base),
          show(metric(measured, (r) => ideal / r.wallMs)),
          show(
            metric(measured, (r) => r.peakRssBytes),
            mb,
          ),
        ]
      },
    )
    parts.push(table(['contender', 'wall ms', '× baseline', 'efficiency', 'peak RSS MB'], rows), '')
  }

  const persistence = groups.filter((group) => group.job.workload === 'persistence')
  if (persistence.length > 0) {
    parts.push('## Persistence', '')
    parts.push(
      'Fan-out of (agents − 1) children × 3 steps at 0 ms, every agent written after each change. ' +
        '"store µs/step" is the main-thread time of the writes (encode and keep, measured around each ' +
        'synchronous store call) per model step; for the file store that leaves out the I/O, so ' +
        '"Δ wall µs/step" is given too: (wall with the store − wall with writes dropped) / steps, Cohort only. ' +
        "Peers keep each write as JSON in a map; xstate-parent rewrites the parent's whole persisted snapshot " +
        '(timed on 300 sampled steps, scaled). Small runs are repeated in the cell to about 3,000 steps.',
      '',
    )
    const rows: string[][] = []
    const perStepDelta = new Map<string, Stat | undefined>()
    for (const group of persistence) {
      const job = group.job as Extract<Job, { workload: 'persistence' }>
      const base = metric(find(results, group.id, 'promise-all'), (r) => (r.storeMs! * 1000) / r.steps!)
      const none = find(results, `persistence ${job.agents} agents none`, 'cohort')
      const noneWall = metric(none, (r) => (r.wallMs * 1000) / r.steps!)
      const head = (contender: ContenderName) => [String(job.agents), job.store, contender]
      const cells = (measured: Measured, contender: ContenderName) => {
        const storePerStep = metric(measured, (r) => (r.storeMs! * 1000) / r.steps!)
        const perWrite = metric(measured, (r) => (r.storeMs! * 1000) / Math.max(1, r.writes!))
        const wallPerStep = metric(measured, (r) => (r.wallMs * 1000) / r.steps!)
        let delta: Stat | undefined
        if (contender === 'cohort' && job.store !== 'none' && wallPerStep && noneWall) {
          delta = { median: wallPerStep.median - noneWall.median, min: Number.NaN, max: Number.NaN }
          perStepDelta.set(`${job.store} ${job.agents}`, delta)
        }
        return [
          job.store === 'none' ? '–' : show(storePerStep),
          job.store === 'none' || job.store === 'file' ? '–' : ratio(storePerStep, base),
          job.store === 'none' ? '–' : show(perWrite),
          show(wallPerStep),
          delta ? digits(delta.median) : '–',
        ]
      }
      rows.push(...contenderRows(results, group, 5, head, cells))
      if (job.store === 'memory') {
        const cohort = metric(find(results, group.id, 'cohort'), (r) => (r.storeMs! * 1000) / r.steps!)
        perStepDelta.set(`sync ${job.agents}`, cohort)
      }
    }
    parts.push(
      table(
        [
          'agents',
          'store',
          'contender',
          'store µs/step',
          '× baseline',
          'store µs/write',
          'wall µs/step',
          'Δ wall µs/step',
        ],
        rows,
      ),
      '',
    )
    const sizes = [...new Set(persistence.map((group) => (group.job as { agents: number }).agents))].sort(
      (a, b) => a - b,
    )
    const small = sizes[0]
    const large = sizes.at(-1)
    for (const [key, label] of [
      ['sync', 'memory store, main-thread µs/step'],
      ['memory', 'memory store, Δ wall µs/step'],
      ['file', 'file store, Δ wall µs/step'],
    ] as const) {
      const a = perStepDelta.get(`${key} ${small}`)
      const b = perStepDelta.get(`${key} ${large}`)
      const ok = a && b && small !== large
      const ratio = ok ? growth(a.median, b.median) : 0
      const shown =
        ok && (a.median <= 0 || b.median <= 0) ? 'at or below zero: within the noise' : `${digits(ratio)}×`
      targets.push({
        name: `per-step persistence cost within 1.5× from ${small} to ${large?.toLocaleString('en-US')} agents (${label})`,
        value: ok ? `${digits(a.median)} → ${digits(b.median)} µs (${shown})` : 'not measured',
        met: ok ? ratio <= 1.5 : undefined,
      })
    }
  }

  const durable = groups.filter((group) => group.job.workload === 'fan-out' && group.job.store)
  if (durable.length > 0) parts.push(...durableSection(durable, results))

  const history = groups.filter((group) => group.job.workload === 'history')
  if (history.length > 0) {
    parts.push('## A long history', '')
    parts.push(
      `Cohort, one agent of ${historyTurns} model calls at 0 ms, each but the last a tool call whose result is ` +
        `${historyResultBytes.toLocaleString('en-US')} characters, every step stored before the next (\`'sync'\`). ` +
        'µs a step over the first tenth of its turns and over the last: a write that grew with the history ' +
        'would show as a ratio well over 1.',
      '',
    )
    const rows = history.flatMap((group) =>
      contenderRows(
        results,
        group,
        3,
        () => [(group.job as Extract<Job, { workload: 'history' }>).store],
        (measured) => {
          const first = metric(measured, (r) => r.firstUs)
          const last = metric(measured, (r) => r.lastUs)
          return [show(first), show(last), ratio(last, first)]
        },
      ),
    )
    parts.push(table(['store', 'µs a step, first tenth', 'µs a step, last tenth', 'last ÷ first'], rows), '')
  }

  const restore = groups.filter((group) => group.job.workload === 'restore')
  for (const group of restore) {
    const measured = find(results, group.id, 'cohort')
    if (!measured) continue
    parts.push('## Snapshot and restore', '')
    parts.push(
      'Cohort, fan-out of 999 children × 3 steps at 50 ms, snapshotted mid-way (`run.snapshot()` after 75 ms; ' +
        'the cell fails unless the snapshot holds every agent and at least half the children unfinished), the ' +
        'snapshot stored and resumed by a fresh runtime. Restore is `runtime.resume(runId)` until it ' +
        "returns; finish is until the resumed run's result.",
      '',
    )
    const failed = status(measured)
    const restoreMs = metric(measured, (r) => r.restoreMs)
    parts.push(
      failed
        ? failed
        : table(
            ['agents', 'snapshot ms', 'snapshot KB', 'restore ms', 'restore → result ms', 'peak RSS MB'],
            [
              [
                show(metric(measured, (r) => r.agents)),
                show(metric(measured, (r) => r.snapshotMs)),
                show(
                  metric(measured, (r) => r.snapshotBytes),
                  1 / 1024,
                ),
                show(restoreMs),
                show(metric(measured, (r) => r.finishMs)),
                show(
                  metric(measured, (r) => r.peakRssBytes),
                  mb,
                ),
              ],
            ],
          ),
      '',
    )
    targets.push({
      name: 'restore of 1,000 agents < 500 ms',
      value: restoreMs ? `${digits(restoreMs.median)} ms` : 'not measured',
      met: restoreMs ? restoreMs.median < 500 : undefined,
    })
  }

  const idle = groups.filter((group) => group.job.workload === 'idle')
  for (const group of idle) {
    const job = group.job as Extract<Job, { workload: 'idle' }>
    parts.push('## Idle cost', '')
    parts.push(
      `${job.agents.toLocaleString('en-US')} agents parked (Cohort: suspended on a tool, waiting for \`run.resume\`; ` +
        'peers: a pending promise or model call). Heap and RSS growth after two GCs, over the process before the run.',
      '',
    )
    const base = metric(find(results, group.id, 'promise-all'), (r) => r.idleHeapBytes)
    const rows = contenderRows(
      results,
      group,
      4,
      (contender) => [contender],
      (measured) => {
        const heap = metric(measured, (r) => r.idleHeapBytes)
        return [
          show(heap, mb),
          ratio(heap, base),
          show(
            metric(measured, (r) => r.idleHeapBytes! / job.agents),
            1 / 1024,
          ),
          show(
            metric(measured, (r) => r.idleRssBytes),
            mb,
          ),
        ]
      },
    )
    parts.push(table(['contender', 'heap MB', '× baseline', 'heap KB/agent', 'RSS MB'], rows), '')
  }

  const targetTable = table(
    ['target', 'measured (Cohort, median)', 'met'],
    targets.map((target) => [
      target.name,
      target.value,
      target.met === undefined ? '–' : target.met ? 'met' : 'not met',
    ]),
  )
  const issue = issueTargets(results)
  const issueTable = table(
    ['line', 'target', 'measured (median)', 'met'],
    issue.map((target) => [
      target.name,
      target.goal,
      target.value,
      target.met === undefined ? '–' : target.met ? 'met' : 'not met',
    ]),
  )
  const sameWorkTable = table(
    ['measure', 'Cohort', "XState doing Cohort's step", 'Cohort / XState'],
    sameWork(results).map((row) => [row.name, row.ours, row.theirs, row.ratio]),
  )
  const mode = options.quick ? 'quick (N ≤ 1,000; N = 10,000 at 0 ms for three contenders)' : 'full'
  const markdown = [
    '# Cohort benchmark results',
    '',
    machineLine(options),
    '',
    `Mode: ${mode}, ${options.reps} repetitions; numbers are medians with min–max in parentheses. ` +
      'Every cell is a fresh Node process that first runs the same job at its own latency (1,000 agents; ' +
      'the depth-10 tree for recursion) three times, and more until a second has gone (ten at most); a ' +
      'fan-out smaller than that then runs itself until it has taken about 3,000 steps (ten runs at most), ' +
      'with no forced collection after, so the measured run is the steady state of a warm process. A ' +
      'fan-out at 0 ms is measured over as many runs as make about 30,000 steps (three at least, 100 at ' +
      'most), and its wall time is their mean. Contenders are interleaved within each repetition.',
    '',
    '## Issue #22',
    '',
    'Each line of the issue, measured in this run. µs/step is wall time / steps at 0 ms; CPU µs/step is ' +
      "the process's CPU time (user + system, all threads) / steps; writes/s is agent records written / wall time.",
    '',
    issueTable,
    '',
    "XState's independent actors above make a model call a step and keep nothing. A Cohort step is a " +
      'model call and a tool call, with the reply and the result added to the history and the agent ' +
      'written after each (two writes). `xstate-agent` does that work with XState alone: a model and a ' +
      "tool invoked as promise actors, the history in the context, every change's persisted snapshot " +
      'written as JSON to a map (as the memory store keeps it); it checks nothing, has no limits, and ' +
      'writes after the change rather than before its effect.',
    '',
    sameWorkTable,
    '',
    '## Earlier targets',
    '',
    targetTable,
    '',
    ...parts,
  ].join('\n')
  return {
    markdown,
    targets: [...issue.map((target) => ({ ...target, name: `#22: ${target.name}` })), ...targets],
  }
}

/** The µs a step at 0 ms of a contender at N children (wall / steps), median over repetitions. */
function stepAt0(results: Measured[], children: number, contender: ContenderName): Stat | undefined {
  return metric(
    find(results, `fan-out ${children}x${steps}x0ms`, contender),
    (r) => (r.wallMs * 1000) / (children * steps),
  )
}

function efficiencyOf(measured: Measured | undefined, latencyMs: number): Stat | undefined {
  return metric(measured, (r) => (steps * latencyMs) / r.wallMs)
}

/** CPU µs a step and records written a second, for a durable cell. */
function durableFigures(measured: Measured | undefined) {
  return {
    efficiency: efficiencyOf(measured, durableLatencyMs),
    cpuPerStep: metric(measured, (r) => (r.cpuMs === undefined ? undefined : (r.cpuMs * 1000) / r.steps!)),
    writesPerSecond: metric(measured, (r) =>
      r.writes === undefined ? undefined : r.writes / (r.wallMs / 1000),
    ),
  }
}

function issueTargets(results: Measured[]): IssueTarget[] {
  const lines: IssueTarget[] = []
  const notMeasured = { value: 'not measured', met: undefined }
  for (const children of [100, 1_000, 10_000]) {
    const ours = stepAt0(results, children, 'cohort')
    const theirs = stepAt0(results, children, 'xstate-independent')
    const r = ours && theirs ? ours.median / theirs.median : undefined
    lines.push({
      name: `step at 0 ms, Cohort / XState independent actors, N = ${children.toLocaleString('en-US')}`,
      goal: '≤ 1.0',
      ...(r === undefined
        ? notMeasured
        : { value: `${digits(ours!.median)} / ${digits(theirs!.median)} µs = ${digits(r)}×`, met: r <= 1 }),
    })
  }
  const small = stepAt0(results, 100, 'cohort')
  const large = stepAt0(results, 10_000, 'cohort')
  lines.push({
    name: 'step at 0 ms flat: Cohort at N = 10,000 / at N = 100',
    goal: '≤ 1.3×',
    ...(small && large
      ? {
          value: `${digits(large.median)} / ${digits(small.median)} µs = ${digits(large.median / small.median)}×`,
          met: large.median / small.median <= 1.3,
        }
      : notMeasured),
  })
  for (const [children, store, goal] of [
    [1_000, 'memory', 0.95],
    [1_000, 'postgres', 0.9],
    [100, 'memory', 0.99],
  ] as const) {
    const figures = durableFigures(find(results, durableGroup(children, store), 'cohort'))
    const extra =
      figures.cpuPerStep && figures.writesPerSecond
        ? `; ${digits(figures.cpuPerStep.median)} CPU µs/step, ${digits(figures.writesPerSecond.median)} writes/s`
        : ''
    lines.push({
      name: `${children.toLocaleString('en-US')} × 3 × ${durableLatencyMs} ms, durability 'sync', ${store}Store: efficiency`,
      goal: `≥ ${goal}`,
      ...(figures.efficiency
        ? { value: `${digits(figures.efficiency.median)}${extra}`, met: figures.efficiency.median >= goal }
        : notMeasured),
    })
  }
  const group = `fan-out 1000x${steps}x50ms`
  const cohort = efficiencyOf(find(results, group, 'cohort'), 50)
  const xstate = efficiencyOf(find(results, group, 'xstate-independent'), 50)
  const langGraph = efficiencyOf(find(results, group, 'langgraph'), 50)
  lines.push({
    name: "1,000 × 3 × 50 ms efficiency, against XState's independent actors in the same run",
    goal: '≥ theirs',
    ...(cohort && xstate
      ? {
          value: `${digits(cohort.median)} against ${digits(xstate.median)}`,
          met: cohort.median >= xstate.median,
        }
      : notMeasured),
  })
  lines.push({
    name: "1,000 × 3 × 50 ms efficiency, against LangGraph.js's in the same run",
    goal: '≥ 5×',
    ...(cohort && langGraph
      ? {
          value: `${digits(cohort.median)} against ${digits(langGraph.median)} = ${digits(cohort.median / langGraph.median)}×`,
          met: cohort.median >= 5 * langGraph.median,
        }
      : notMeasured),
  })
  const idle = results.find((result) => result.job.workload === 'idle' && result.contender === 'cohort')
  const agents = idle?.job.workload === 'idle' ? idle.job.agents : 0
  const parked = metric(idle, (r) => (r.idleHeapBytes === undefined ? undefined : r.idleHeapBytes / agents))
  lines.push({
    name: `a parked agent (heap growth / ${agents.toLocaleString('en-US')} agents suspended)`,
    goal: '≤ 8 KB',
    ...(parked
      ? { value: `${digits(parked.median / 1024)} KB`, met: parked.median <= 8 * 1024 }
      : notMeasured),
  })
  const restored = metric(
    results.find((result) => result.job.workload === 'restore' && result.contender === 'cohort'),
    (r) => r.restoreMs,
  )
  lines.push({
    name: 'restore of a 1,000-agent run',
    goal: '< 500 ms',
    ...(restored ? { value: `${digits(restored.median)} ms`, met: restored.median < 500 } : notMeasured),
  })
  return lines
}

/** Cohort against XState's actors doing the work of a Cohort step (`xstate-agent`). */
function sameWork(results: Measured[]): { name: string; ours: string; theirs: string; ratio: string }[] {
  const rows: { name: string; ours: string; theirs: string; ratio: string }[] = []
  for (const children of [100, 1_000, 10_000]) {
    const ours = stepAt0(results, children, 'cohort')
    const theirs = stepAt0(results, children, 'xstate-agent')
    rows.push({
      name: `µs a step at 0 ms, N = ${children.toLocaleString('en-US')}`,
      ours: ours ? digits(ours.median) : '–',
      theirs: theirs ? digits(theirs.median) : '–',
      ratio: ours && theirs ? `${digits(ours.median / theirs.median)}×` : '–',
    })
  }
  const groups: [string, string, number][] = [
    [`fan-out 1000x${steps}x50ms`, '1,000 × 3 × 50 ms', 50],
    [durableGroup(100, 'memory'), `100 × 3 × ${durableLatencyMs} ms, memory`, durableLatencyMs],
    [durableGroup(1_000, 'memory'), `1,000 × 3 × ${durableLatencyMs} ms, memory`, durableLatencyMs],
  ]
  for (const [group, label, latencyMs] of groups) {
    const ours = efficiencyOf(find(results, group, 'cohort'), latencyMs)
    const theirs = efficiencyOf(find(results, group, 'xstate-agent'), latencyMs)
    rows.push({
      name: `efficiency, ${label}`,
      ours: ours ? digits(ours.median) : '–',
      theirs: theirs ? digits(theirs.median) : '–',
      ratio: ours && theirs ? `${digits(ours.median / theirs.median)}×` : '–',
    })
  }
  return rows
}

/** The fan-outs whose every step is written first (`durability: 'sync'`), on each store. */
function durableSection(groups: Group[], results: Measured[]): string[] {
  const rows: string[][] = []
  for (const group of groups) {
    const job = group.job as Extract<Job, { workload: 'fan-out' }>
    const head = (contender: ContenderName) => [
      String(job.children),
      contender === 'cohort'
        ? `${job.store}Store`
        : contender === 'xstate-agent'
          ? 'a map of JSON'
          : 'none (keeps nothing)',
      contender,
    ]
    const cells = (measured: Measured) => {
      const figures = durableFigures(measured)
      return [
        show(metric(measured, (r) => r.wallMs)),
        show(figures.efficiency),
        show(figures.cpuPerStep),
        show(metric(measured, (r) => r.writes)),
        show(metric(measured, (r) => r.batches)),
        show(figures.writesPerSecond),
        show(
          metric(measured, (r) => r.peakRssBytes),
          mb,
        ),
      ]
    }
    rows.push(...contenderRows(results, group, 7, head, cells))
  }
  return [
    `## Durable fan-out at ${durableLatencyMs} ms`,
    '',
    `One parent, N children, K = 3 model steps of ${durableLatencyMs} ms each; Cohort with \`durability: 'sync'\` ` +
      '(every step stored before the effects that depend on it). PostgreSQL: `@cohort/postgres` in a fresh ' +
      'schema per cell, dropped after it, on the server at `DATABASE_URL`. CPU µs/step is the CPU time of the ' +
      "bench process (not the database server's) / model steps; writes are agent records stored, store calls " +
      'the `saveAgent` calls and `saveAgents` batches that stored them.',
    '',
    table(
      [
        'N',
        'store',
        'contender',
        'wall ms',
        'efficiency',
        'CPU µs/step',
        'writes',
        'store calls',
        'writes/s',
        'peak RSS MB',
      ],
      rows,
    ),
    '',
  ]
}

function machine() {
  const cpus = os.cpus()
  let commit = 'unknown'
  try {
    commit = execSync('git rev-parse --short HEAD', { cwd: benchDir, stdio: ['ignore', 'pipe', 'ignore'] })
      .toString()
      .trim()
  } catch {
    // Not a git checkout: the commit stays unknown.
  }
  return {
    date: new Date().toISOString(),
    cpu: cpus[0]?.model.trim() ?? 'unknown',
    cpus: cpus.length,
    memoryGB: Math.round(os.totalmem() / 1024 ** 3),
    node: process.version,
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    commit,
  }
}

function machineLine(options: Options): string {
  const m = machine()
  void options
  return `${m.date.slice(0, 10)} · ${m.cpus} × ${m.cpu} · ${m.memoryGB} GB · Node ${m.node} · ${m.platform} · commit ${m.commit}`
}

// ---------------------------------------------------------------- main

async function main(): Promise<void> {
  const options = parseArgs(process.argv.slice(2))
  const groups = plan(options)
  const results: Measured[] = []
  for (const group of groups) {
    for (const contender of group.contenders) {
      const skipped = skipReason(contender, group.job)
      results.push({
        group: group.id,
        contender,
        job: group.job,
        errors: [],
        samples: [],
        ...(skipped ? { skipped } : {}),
      })
    }
  }
  const total = results.filter((result) => !result.skipped).length * options.reps
  let done = 0
  const started = performance.now()
  for (let rep = 0; rep < options.reps; rep++) {
    for (const group of groups) {
      // Interleaved: each repetition starts the rotation at a different contender.
      const order = group.contenders.map((_, i) => group.contenders[(i + rep) % group.contenders.length]!)
      for (const contender of order) {
        const measured = find(results, group.id, contender)!
        if (measured.skipped) continue
        // A cell that failed once is not retried: it would most likely fail (or time out) again.
        if (measured.errors.length > 0) {
          done++
          continue
        }
        try {
          measured.samples.push(await runCell({ contender, job: group.job }))
        } catch (error) {
          measured.errors.push((error as Error).message)
        }
        done++
        const elapsed = ((performance.now() - started) / 1000).toFixed(0)
        const last = measured.samples.at(-1)
        const note = measured.errors.length > 0 ? 'FAILED' : `${last?.wallMs.toFixed(1)} ms`
        process.stderr.write(
          `[${done}/${total} ${elapsed}s] rep ${rep + 1} ${group.id} ${contender}: ${note}\n`,
        )
      }
    }
  }
  const { markdown, targets } = report(groups, results, options)
  const outDir = path.join(benchDir, 'results')
  await mkdir(outDir, { recursive: true })
  // Only a full run replaces the committed tables; a quick or partial one is written beside them.
  const name = options.quick || options.only ? 'partial' : 'latest'
  await writeFile(path.join(outDir, `${name}.md`), `${markdown}\n`)
  await writeFile(
    path.join(outDir, `${name}.json`),
    `${JSON.stringify({ machine: machine(), options, targets, results }, null, 2)}\n`,
  )
  console.log(markdown)
  console.log(`\nwritten to ${path.relative(process.cwd(), outDir)}/${name}.md and ${name}.json`)
}

main().catch((error: unknown) => {
  console.error(error)
  process.exit(1)
})
