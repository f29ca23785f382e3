import { consoleColors, type Run } from '@cohort/core'
import { renderTree, TreeState } from './tree.js'
import type { AgentSummary } from './views.js'

const redrawMs = 100

/**
 * Draws the run's agent tree in place on a terminal, redrawn as events arrive (and each 100 ms
 * for elapsed times). Returns a function that draws the last frame and stops.
 */
export function liveTree(run: Run, out: NodeJS.WriteStream, known: readonly AgentSummary[] = []): () => void {
  const state = TreeState.fromSummaries(known)
  const colors = consoleColors(out)
  let drawn = 0
  let dirty = true
  const draw = () => {
    const width = out.columns || 120
    const lines = renderTree(state.nodes.values(), { colors, width })
    // Up to the first row of the last frame, clear to the end, draw again. A line the terminal
    // wrapped took more than one row (a tree deeper than the terminal is wide).
    out.write(`${drawn > 0 ? `\u001b[${drawn}F\u001b[J` : ''}${lines.join('\n')}\n`)
    drawn = lines.reduce((rows, line) => rows + Math.max(1, Math.ceil(visibleLength(line) / width)), 0)
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

/** Characters a line shows: its colour codes take no room. */
function visibleLength(line: string): number {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: colour codes begin with ESC
  return line.replace(/\u001b\[[0-9;]*m/g, '').length
}
