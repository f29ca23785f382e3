import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import {
  type AgentRecord,
  createRuntime,
  defineAgent,
  defineTool,
  encodeRecord,
  fileStore,
  type ModelRequest,
  memoryStore,
  type RunStore,
  type ScriptedReply,
  scriptedModel,
} from '@cohort/core'
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

/** The lead launches every child and waits in one reply, then finishes: its calls take no latency. */
function leadScript(children: number): (request: ModelRequest) => ScriptedReply {
  return (request) =>
    request.turn === 0
      ? [
          {
            action: 'launch_subagents',
            agents: Array.from({ length: children }, (_, i) => ({ agent: 'worker', task: `${i}`, id: `w${i}` })),
          },
          { action: 'wait_for_subagents' },
        ]
      : { action: 'finish', result: 'done' }
}

/** `steps` model calls: a no-op tool call each turn, then `finish`. */
function workerScript(steps: number): (request: ModelRequest) => ScriptedReply {
  return (request) =>
    request.turn < steps - 1
      ? { action: 'call_tool', tool: 'noop', args: {} }
      : { action: 'finish', result: request.agent.task }
}

function fanOutRuntime(children: number, steps: number, latencyMs: number, store: RunStore) {
  return createRuntime({
    agents: [worker, lead],
    model: scriptedModel(
      { lead: leadScript(children), worker: workerScript(steps) },
      { latencyMs: (request) => (request.agent.depth === 0 ? 0 : latencyMs) },
    ),
    store,
    limits: { maxAgents: children + 1, maxChildrenPerLaunch: children, maxSteps: steps + 2 },
  })
}

/** Times every `saveAgent`, which encodes the record and keeps it, as the runtime calls it. */
function timedStore(inner: RunStore): { store: RunStore; totals: { writes: number; ms: number } } {
  const totals = { writes: 0, ms: 0 }
  const store: RunStore = {
    ...inner,
    saveAgent: async (runId, record) => {
      const started = performance.now()
      await inner.saveAgent(runId, record)
      totals.ms += performance.now() - started
      totals.writes++
    },
  }
  return { store, totals }
}

async function copyStore(from: RunStore, runId: string): Promise<RunStore> {
  const stored = await from.loadRun(runId)
  if (!stored) throw new Error(`run ${runId} is not in the store`)
  const to = memoryStore()
  await to.saveRun(stored.run)
  for (const agent of stored.agents) await to.saveAgent(runId, agent)
  return to
}

export const cohort: Contender = {
  async fanOut({ children, steps, latencyMs }) {
    await fanOutRuntime(children, steps, latencyMs, memoryStore()).run('lead', 'go')
    return { steps: children * steps + 2 }
  },

  async recursion({ depth, latencyMs }) {
    // Internal nodes launch two children and wait, then finish; leaves finish at once.
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
    const runtime = createRuntime({
      agents: [node],
      model,
      limits: { maxAgents: agents, maxDepth: depth, maxChildrenPerLaunch: 2 },
    })
    await runtime.run('node', 'root')
    return { steps: agents + (2 ** (depth - 1) - 1) }
  },

  async persistence({ agents, steps, store: kind }) {
    const dir = kind === 'file' ? await mkdtemp(path.join(tmpdir(), 'cohort-bench-')) : undefined
    try {
      const { store, totals } = timedStore(dir ? fileStore(dir) : memoryStore())
      await fanOutRuntime(agents - 1, steps, 0, store).run('lead', 'go')
      return { steps: (agents - 1) * steps + 2, writes: totals.writes, storeMs: totals.ms }
    } finally {
      if (dir) await rm(dir, { recursive: true, force: true })
    }
  },

  async restore({ agents, steps, latencyMs }) {
    // The run is copied while every child is mid-way, as a crash would leave it, then resumed.
    const children = agents - 1
    const live = memoryStore()
    const runtime = fanOutRuntime(children, steps, latencyMs, live)
    const run = runtime.start('lead', 'go')
    await new Promise((resolve) => setTimeout(resolve, latencyMs * 1.5))
    let started = performance.now()
    const snapshot = await run.snapshot()
    const snapshotMs = performance.now() - started
    let snapshotBytes = encodeRecord(snapshot.run).length
    for (const agent of snapshot.agents as AgentRecord[]) snapshotBytes += encodeRecord(agent).length
    const crashed = await copyStore(live, run.id)
    await run.cancel('benchmark: the copy is resumed instead')
    const again = fanOutRuntime(children, steps, latencyMs, crashed)
    started = performance.now()
    const resumed = await again.resume(run.id)
    const restoreMs = performance.now() - started
    await resumed.result
    const finishMs = performance.now() - started
    return { agents: snapshot.agents.length, snapshotMs, snapshotBytes, restoreMs, finishMs }
  },

  async idle({ agents }, measure) {
    const model = scriptedModel({
      lead: leadScript(agents),
      worker: (request) =>
        request.turn === 0 ? { action: 'call_tool', tool: 'pause', args: {} } : { action: 'finish', result: 'ok' },
    })
    const runtime = createRuntime({
      agents: [worker, lead],
      model,
      limits: { maxAgents: agents + 1, maxChildrenPerLaunch: agents },
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
}
