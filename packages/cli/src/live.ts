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
  const draw = (whole = false) => {
    const width = out.columns || 120
    const tree = renderTree(state.nodes.values(), { colors, width })
    // The last frame is drawn whole: it is not redrawn, so it may scroll.
    const lines = whole ? tree : fitRows(tree, width, out.rows)
    // Up to the first row of the last frame, clear to the end, draw again. A line the terminal
    // wrapped took more than one row (a tree deeper than the terminal is wide).
    out.write(`${drawn > 0 ? `\u001b[${drawn}F\u001b[J` : ''}${lines.join('\n')}\n`)
    drawn = lines.reduce((rows, line) => rows + rowsOf(line, width), 0)
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
    draw(true)
    out.write('\u001b[?25h')
  }
}

/**
 * The lines of a frame that fit the terminal's rows, the last saying how many agents are left
 * out: the cursor cannot move above the screen's top, so a taller frame would leave copies of
 * itself in the scrollback at every redraw. The cursor's own row, below the frame, counts.
 */
function fitRows(lines: string[], width: number, rows: number | undefined): string[] {
  const room = (rows || Number.POSITIVE_INFINITY) - 1
  if (lines.reduce((used, line) => used + rowsOf(line, width), 0) <= room) return lines
  const shown: string[] = []
  let used = 0
  for (const line of lines) {
    // One row stays for the line that says what is not shown.
    if (used + rowsOf(line, width) > room - 1) break
    shown.push(line)
    used += rowsOf(line, width)
  }
  const hidden = lines.length - shown.length
  return [...shown, `… ${hidden} more agent${hidden === 1 ? '' : 's'} not shown`]
}

/** Rows a line takes on a terminal of this width: more than one when the terminal wraps it. */
function rowsOf(line: string, width: number): number {
  return Math.max(1, Math.ceil(visibleLength(line) / width))
}

/** Characters a line shows: its colour codes take no room. */
function visibleLength(line: string): number {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: colour codes begin with ESC
  return line.replace(/\u001b\[[0-9;]*m/g, '').length
}
