import type { AgentEntry } from './agent-entry.js'

/**
 * The deadlines of a run's agents as it goes on after a stop (a detach, a crash). A timeout
 * counts the time the run ran, so `stoppedFor` is given back to every agent on the clock; and an
 * effect the stop cut off runs again from its start, so the time it had run (`lostOf`) is given
 * back to its agent and to each ancestor waiting on it, whose wait takes that much longer too.
 * Only the agents whose deadline moves are in the map.
 */
export function deadlinesAfterStop(
  entries: readonly AgentEntry[],
  registry: ReadonlyMap<string, AgentEntry>,
  stoppedFor: number,
  lostOf: (entry: AgentEntry) => number,
): Map<AgentEntry, number> {
  const lost = new Map<AgentEntry, number>()
  for (const entry of entries) {
    const ms = entry.settled ? 0 : lostOf(entry)
    if (!(ms > 0)) continue
    let at: AgentEntry | undefined = entry
    // An ancestor given as much already has had its own ancestors given as much too.
    while (at && !at.settled && (lost.get(at) ?? 0) < ms) {
      lost.set(at, ms)
      at = at.parentId === null ? undefined : registry.get(at.parentId)
    }
  }
  const moved = new Map<AgentEntry, number>()
  for (const entry of entries) {
    const { deadline } = entry.context
    const extra = stoppedFor + (lost.get(entry) ?? 0)
    // An agent not started yet gets its deadline when it starts.
    if (deadline !== null && extra > 0 && !entry.settled && entry.status !== 'idle')
      moved.set(entry, deadline + extra)
  }
  return moved
}
