import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import {
  createRuntime,
  defineAgent,
  defineTool,
  encodeRecord,
  fileStore,
  type ModelRequest,
  memoryStore,
  type RunSnapshot,
  type RunStore,
  type Runtime,
  type ScriptedReply,
  scriptedModel,
} from '@cohort/core'
import { postgresStore } from '@cohort/postgres'
import pg from 'pg'
import { z } from 'zod'
import type { Contender, Job } from './contender.js'

/** A tool that does nothing: the steps before a worker's last are calls to it. */
const noop = defineTool({
  name: 'noop',
  description: 'Does nothing',
  parameters: z.object({}),
  execute: () => 'ok',
})

/** Waits for `run.resume(agentId)`: an agent parked on the outside world. */
const pause = defineTool({
  name: 'pause',
  description: 'Waits until resumed',
  parameters: z.object({}),
  execute: (_args, ctx) => ctx.suspend('waiting'),
})

const worker = defineAgent({ name: 'worker', instructions: 'Work in steps.', tools: [noop, pause] })
const lead = defineAgent({ name: 'lead', instructions: 'Fan out.', subagents: [worker] })
const node = defineAgent({ name: 'node', instructions: 'Split in two.', subagents: ['node'] })

/**
 * Children one reply launches: a reply is capped at 200,000 characters, so a lead of more than
 * this many children launches them over several turns (its calls take no latency).
 */
const launchBatch = 2_000

function launchTurns(children: number): number {
  return Math.max(1, Math.ceil(children / launchBatch))
}

/** The lead launches every child, in batches, waits on the last one, then finishes. */
function leadScript(children: number): (request: ModelRequest) => ScriptedReply {
  const turns = launchTurns(children)
  return (request) => {
    if (request.turn >= turns) return { action: 'finish', result: 'done' }
    const from = request.turn * launchBatch
    const launch: ScriptedReply = {
      action: 'launch_subagents',
      agents: Array.from({ length: Math.min(launchBatch, children - from) }, (_, i) => ({
        agent: 'worker',
        task: `${from + i}`,
        id: `w${from + i}`,
      })),
    }
    return request.turn === turns - 1 ? [launch, { action: 'wait_for_subagents' }] : launch
  }
}

/** `steps` model calls: a no-op tool call each turn, then `finish`. */
function workerScript(steps: number, calls?: { worker: number }): (request: ModelRequest) => ScriptedReply {
  return (request) => {
    if (calls) calls.worker++
    return request.turn < steps - 1
      ? { action: 'call_tool', tool: 'noop', args: {} }
      : { action: 'finish', result: request.agent.task }
  }
}

export function fanOutRuntime(
  children: number,
  steps: number,
  latencyMs: number,
  store: RunStore,
  calls?: { worker: number },
) {
  return createRuntime({
    durability: 'sync',
    agents: [worker, lead],
    model: scriptedModel(
      { lead: leadScript(children), worker: workerScript(steps, calls) },
      { latencyMs: (request) => (request.agent.depth === 0 ? 0 : latencyMs) },
    ),
    store,
    limits: {
      maxAgents: children + 1,
      maxChildrenPerLaunch: Math.min(children, launchBatch),
      maxSteps: Math.max(steps, launchTurns(children)) + 2,
    },
  })
}

/**
 * Times the synchronous part of every `saveAgent` as the runtime calls it: for the memory store
 * that is the whole write (encode and keep). Writes overlap, so awaiting each one would count
 * the time other agents ran in between.
 */
function timedStore(inner: RunStore): { store: RunStore; totals: { writes: number; ms: number } } {
  const totals = { writes: 0, ms: 0 }
  const store: RunStore = {
    ...inner,
    saveAgent: (runId, record) => {
      const started = performance.now()
      const pending = inner.saveAgent(runId, record)
      totals.ms += performance.now() - started
      totals.writes++
      return pending
    },
  }
  return { store, totals }
}

/**
 * Counts the agent records written and the store calls that wrote them, `saveAgents` batches
 * included (the runtime writes the agents changed in one turn with one `saveAgents` when the
 * store has it, and with one `saveAgent` each otherwise).
 */
function countedStore(inner: RunStore): { store: RunStore; counts: { writes: number; batches: number } } {
  const counts = { writes: 0, batches: 0 }
  const store: RunStore = {
    ...inner,
    saveAgent: (runId, record) => {
      counts.writes++
      counts.batches++
      return inner.saveAgent(runId, record)
    },
  }
  const saveAgents = inner.saveAgents?.bind(inner)
  if (saveAgents) {
    store.saveAgents = (runId, records) => {
      counts.writes += records.length
      counts.batches++
      return saveAgents(runId, records)
    }
  }
  return { store, counts }
}

/** Where a cell's PostgreSQL runs go: the usual `DATABASE_URL`, or the tests' local default. */
const databaseUrl = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test'

/** Stores to close and schemas to drop when the cell ends. */
const cleanups: (() => Promise<void>)[] = []

/** Closes the stores made here and drops what they made (a schema). */
export async function closeStores(): Promise<void> {
  for (const cleanup of cleanups.splice(0)) await cleanup()
}

/** A PostgreSQL store in a schema of its own, dropped (with its tables) when the cell ends. */
export function freshPostgresStore(): RunStore {
  const pool = new pg.Pool({ connectionString: databaseUrl, max: 10, connectionTimeoutMillis: 10_000 })
  pool.on('error', () => {})
  const schema = `cohort_bench_${process.pid}_${Math.random().toString(36).slice(2, 8)}`
  const store = postgresStore({ pool, schema })
  cleanups.push(async () => {
    await store.close()
    await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`)
    await pool.end()
  })
  return store
}

/** A memory store that drops agent writes: the run with no persistence cost to compare with. */
function droppingStore(): RunStore {
  return { ...memoryStore(), saveAgent: async () => {} }
}

/**
 * Runs the lead and checks that the run did what it was scripted to: every worker made all its
 * model calls (a refused reply would end the run early and look fast). Counted in the script,
 * not with event listeners: the runtime does not build events that nobody listens to.
 */
async function runChecked(children: number, steps: number, store: RunStore, latencyMs = 0): Promise<void> {
  const calls = { worker: 0 }
  await fanOutRuntime(children, steps, latencyMs, store, calls).run('lead', 'go')
  checkCalls(calls.worker, children, steps)
}

function checkCalls(made: number, children: number, steps: number): void {
  if (made !== children * steps) {
    throw new Error(`cohort: workers made ${made} of ${children * steps} model calls`)
  }
}

/**
 * A runtime made once per job and used by each of its runs, as a server makes its runtime once
 * (and as the XState peers define their machines once): making it in every run added 0.14 ms to
 * a 100 × 3 run at 0 ms. A run's records leave the store when it ends, so the store does not grow
 * over the cell's runs.
 */
interface Reused {
  runtime: Runtime
  store: RunStore
}

const reusedRuntimes = new Map<string, Reused>()

function reused<T extends Reused>(key: string, make: () => T): T {
  let entry = reusedRuntimes.get(key) as T | undefined
  if (!entry) {
    entry = make()
    reusedRuntimes.set(key, entry)
  }
  return entry
}

async function runOnce({ runtime, store }: Reused, agent: string, task: string): Promise<void> {
  const run = runtime.start(agent, task)
  await run.result
  await store.deleteRun?.(run.id)
}

async function fanOutOnce(
  job: Extract<Job, { workload: 'fan-out' }>,
): Promise<{ writes: number; batches: number } | undefined> {
  const { children, steps, latencyMs, store: kind } = job
  const fanOut = reused(`fan-out ${children}x${steps}x${latencyMs} ${kind ?? ''}`, () => {
    const inner = kind === 'postgres' ? freshPostgresStore() : memoryStore()
    const { store, counts } = kind ? countedStore(inner) : { store: inner, counts: undefined }
    const calls = { worker: 0 }
    return { runtime: fanOutRuntime(children, steps, latencyMs, store, calls), store, calls, counts }
  })
  fanOut.calls.worker = 0
  const counted = fanOut.counts && { ...fanOut.counts }
  await runOnce(fanOut, 'lead', 'go')
  checkCalls(fanOut.calls.worker, children, steps)
  if (!fanOut.counts || !counted) return undefined
  return { writes: fanOut.counts.writes - counted.writes, batches: fanOut.counts.batches - counted.batches }
}

/** A tool whose result is as long as the history job says: each call adds that much to the history. */
function readTool(resultBytes: number) {
  const text = 'x'.repeat(resultBytes)
  return defineTool({
    name: 'read',
    description: 'Reads a page',
    parameters: z.object({}),
    execute: () => text,
  })
}

/** One agent calling `read` every turn but its last; the time of each model call, kept in `marks`. */
function historyRuntime(
  job: Extract<Job, { workload: 'history' }>,
  store: RunStore,
  marks: number[],
): Runtime {
  const reader = defineAgent({
    name: 'reader',
    instructions: 'Read on.',
    tools: [readTool(job.resultBytes)],
    limits: { maxSteps: job.turns + 1 },
  })
  const model = scriptedModel({
    reader: (request) => {
      marks.push(performance.now())
      return request.turn < job.turns - 1
        ? { action: 'call_tool', tool: 'read', args: {} }
        : { action: 'finish', result: 'read' }
    },
  })
  return createRuntime({ durability: 'sync', agents: [reader], model, store })
}

/** µs a step from `marks[from]` to `marks[to]`. */
function stepUs(marks: number[], from: number, to: number): number {
  return ((marks[to]! - marks[from]!) / (to - from)) * 1_000
}

/** A store holding a snapshot, as a new process would find it. */
async function storeOf(snapshot: RunSnapshot): Promise<RunStore> {
  const store = memoryStore()
  await store.saveRun(snapshot.run)
  for (const agent of snapshot.agents) await store.saveAgent(snapshot.run.id, agent)
  return store
}

/** The recursion: internal nodes launch two children and wait, then finish; leaves finish at once. */
function treeRuntime(depth: number, latencyMs: number, store: RunStore): Runtime {
  const model = scriptedModel(
    {
      node: (request) =>
        request.agent.depth < depth - 1 && request.turn === 0
          ? [
              {
                action: 'launch_subagents',
                agents: [
                  { agent: 'node', task: 'left', id: 'l' },
                  { agent: 'node', task: 'right', id: 'r' },
                ],
              },
              { action: 'wait_for_subagents' },
            ]
          : { action: 'finish', result: request.agent.depth },
    },
    { latencyMs },
  )
  const agents = 2 ** depth - 1
  return createRuntime({
    agents: [node],
    model,
    store,
    limits: { maxAgents: agents, maxDepth: depth, maxChildrenPerLaunch: 2 },
  })
}

export const cohort: Contender = {
  async fanOut(job) {
    const { children, steps } = job
    const written = await fanOutOnce(job)
    return { steps: children * steps + launchTurns(children) + 1, ...written }
  },

  async recursion({ depth, latencyMs }) {
    const tree = reused(`recursion ${depth}x${latencyMs}`, () => {
      const store = memoryStore()
      return { runtime: treeRuntime(depth, latencyMs, store), store }
    })
    await runOnce(tree, 'node', 'root')
    return { steps: 2 ** depth - 1 + (2 ** (depth - 1) - 1) }
  },

  async persistence({ agents, steps, store: kind }) {
    const dir = kind === 'file' ? await mkdtemp(path.join(tmpdir(), 'cohort-bench-')) : undefined
    try {
      const inner = dir ? fileStore(dir) : kind === 'none' ? droppingStore() : memoryStore()
      const { store, totals } = timedStore(inner)
      await runChecked(agents - 1, steps, store)
      return {
        steps: (agents - 1) * steps + launchTurns(agents - 1) + 1,
        writes: totals.writes,
        storeMs: totals.ms,
      }
    } finally {
      if (dir) await rm(dir, { recursive: true, force: true })
    }
  },

  async history(job) {
    const dir = job.store === 'file' ? await mkdtemp(path.join(tmpdir(), 'cohort-bench-')) : undefined
    try {
      const marks: number[] = []
      const store = dir ? fileStore(dir) : job.store === 'postgres' ? freshPostgresStore() : memoryStore()
      await historyRuntime(job, store, marks).run('reader', 'read on')
      if (marks.length !== job.turns)
        throw new Error(`cohort: ${marks.length} of ${job.turns} model calls made`)
      const tenth = Math.max(2, Math.floor(job.turns / 10))
      return {
        steps: job.turns,
        firstUs: stepUs(marks, 1, tenth),
        lastUs: stepUs(marks, job.turns - tenth, job.turns - 1),
      }
    } finally {
      if (dir) await rm(dir, { recursive: true, force: true })
    }
  },

  async restore({ agents, steps, latencyMs }) {
    // The run is snapshotted while every child is mid-way, stored, and resumed by a fresh
    // runtime. A copy of the live store instead was not mid-way on a slow VM: when the run is
    // CPU-bound its writes lag behind it, and the last children were first stored as it ended.
    const children = agents - 1
    const live = memoryStore()
    const runtime = fanOutRuntime(children, steps, latencyMs, live)
    const run = runtime.start('lead', 'go')
    await new Promise((resolve) => setTimeout(resolve, latencyMs * 1.5))
    let started = performance.now()
    const snapshot = await run.snapshot()
    const snapshotMs = performance.now() - started
    await run.cancel('benchmark: the snapshot is resumed instead')
    const held = snapshot.agents.length
    const unfinished = snapshot.agents.filter((agent) => agent.status !== 'completed').length
    if (held !== agents || unfinished < children / 2) {
      throw new Error(
        `cohort: the snapshot held ${held} agents, ${unfinished} of them unfinished; expected all ${agents}, mid-way`,
      )
    }
    let snapshotBytes = encodeRecord(snapshot.run).length
    for (const agent of snapshot.agents) snapshotBytes += encodeRecord(agent).length
    const stored = await storeOf(snapshot)
    const again = fanOutRuntime(children, steps, latencyMs, stored)
    started = performance.now()
    const resumed = await again.resume(run.id)
    const restoreMs = performance.now() - started
    await resumed.result
    const finishMs = performance.now() - started
    return { agents: held, snapshotMs, snapshotBytes, restoreMs, finishMs }
  },

  async idle({ agents }, measure) {
    const model = scriptedModel({
      lead: leadScript(agents),
      worker: (request) =>
        request.turn === 0
          ? { action: 'call_tool', tool: 'pause', args: {} }
          : { action: 'finish', result: 'ok' },
    })
    const runtime = createRuntime({
      agents: [worker, lead],
      model,
      limits: {
        maxAgents: agents + 1,
        maxChildrenPerLaunch: Math.min(agents, launchBatch),
        maxSteps: launchTurns(agents) + 2,
      },
    })
    const run = runtime.start('lead', 'go')
    const parked: string[] = []
    await new Promise<void>((resolve) => {
      const stop = run.on('agent.suspended', (event) => {
        if (event.awaiting === undefined) return
        parked.push(event.agentId)
        if (parked.length === agents) {
          stop()
          resolve()
        }
      })
    })
    await measure()
    for (const id of parked) run.resume(id, 'go on')
    await run.result
  },

  async close() {
    await closeStores()
  },
}
