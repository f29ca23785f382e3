import type { Contender } from './contender.js'
import { modelLatency } from './contender.js'

/** A reply of the scripted model: what the step decided. */
interface Reply {
  action: 'call_tool' | 'finish'
  turn: number
}

async function model(turn: number, steps: number, latencyMs: number): Promise<Reply> {
  await modelLatency(latencyMs)
  return { action: turn < steps - 1 ? 'call_tool' : 'finish', turn }
}

async function child(
  steps: number,
  latencyMs: number,
  onStep?: (state: ChildState) => void,
): Promise<number> {
  const state: ChildState = { turn: 0, messages: [] }
  for (;;) {
    const reply = await model(state.turn, steps, latencyMs)
    state.messages.push(reply)
    state.turn++
    onStep?.(state)
    if (reply.action === 'finish') return state.turn
  }
}

interface ChildState {
  turn: number
  messages: Reply[]
}

async function node(depth: number, maxDepth: number, latencyMs: number): Promise<number> {
  await modelLatency(latencyMs)
  if (depth === maxDepth - 1) return 1
  const below = await Promise.all([
    node(depth + 1, maxDepth, latencyMs),
    node(depth + 1, maxDepth, latencyMs),
  ])
  await modelLatency(latencyMs)
  return below[0]! + below[1]! + 2
}

/** The physical baseline: async functions and `Promise.all`, state in plain objects. */
export const promiseAll: Contender = {
  async fanOut({ children, steps, latencyMs }) {
    const done = await Promise.all(Array.from({ length: children }, () => child(steps, latencyMs)))
    return { steps: done.reduce((a, b) => a + b, 0) }
  },

  async recursion({ depth, latencyMs }) {
    return { steps: await node(0, depth, latencyMs) }
  },

  async persistence({ agents, steps }) {
    // Each step writes the child that changed, as JSON, into a map.
    const kept = new Map<number, string>()
    const totals = { writes: 0, ms: 0 }
    const done = await Promise.all(
      Array.from({ length: agents - 1 }, (_, id) =>
        child(steps, 0, (state) => {
          const started = performance.now()
          kept.set(id, JSON.stringify({ id, ...state }))
          totals.ms += performance.now() - started
          totals.writes++
        }),
      ),
    )
    return { steps: done.reduce((a, b) => a + b, 0), writes: totals.writes, storeMs: totals.ms }
  },

  async idle({ agents }, measure) {
    const releases: (() => void)[] = []
    const parked = Array.from({ length: agents }, async (_, id) => {
      const state = { id, turn: 1, messages: [{ action: 'call_tool', turn: 0 }] }
      await new Promise<void>((resolve) => releases.push(resolve))
      return state.turn
    })
    await measure()
    for (const release of releases) release()
    await Promise.all(parked)
  },
}
