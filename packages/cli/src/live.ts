import type { Run } from '@cohort/core'
import { renderTree, TreeState } from './tree.js'
import type { AgentSummary } from './views.js'

const redrawMs = 100

/**
 * Draws the run's agent tree in place on a terminal, redrawn as events arrive (and each 100 ms
 * for elapsed times). Returns a function that draws the last frame and stops.
 */
export function liveTree(run: Run, out: NodeJS.WriteStream, known: readonly AgentSummary[] = []): () => void {
  const state = TreeState.fromSummaries(known)
  const colors = process.env.NO_COLOR === undefined
  let drawn = 0
  let dirty = true
  const draw = () => {
    const lines = renderTree(state.nodes.values(), { colors, width: out.columns || 120 })
    // Up to the first line of the last frame, clear to the end, draw again.
    out.write(`${drawn > 0 ? `\u001b[${drawn}F\u001b[J` : ''}${lines.join('\n')}\n`)
    drawn = lines.length
    dirty = false
  }
  const unsubscribe = run.on('event', (event) => {
    state.apply(event)
    dirty = true
  })
  out.write('\u001b[?25l')
  const timer = setInterval(() => {
    if (dirty || [...state.nodes.values()].some((node) => node.endedAt === null)) draw()
  }, redrawMs)
  return () => {
    clearInterval(timer)
    unsubscribe()
    draw()
    out.write('\u001b[?25h')
  }
}
