/** Dependencies among the agents of one launch (or plan), by local id. */
export interface DependencyCheck {
  /** For each id, the sibling ids it waits for (invalid ones removed). */
  edges: Map<string, string[]>
  /** `depends_on` entries that named no sibling. */
  dropped: { id: string; dependsOn: string }[]
  /** A cycle among the launched agents, as a path that ends where it starts; undefined if none. */
  cycle: string[] | undefined
}

/**
 * Checks `depends_on` of agents launched together. `siblings` are ids launched earlier by
 * the same parent: depending on them is valid and cannot close a cycle.
 */
export function checkDependencies(
  nodes: readonly { id: string; dependsOn: readonly string[] }[],
  siblings: ReadonlySet<string>,
): DependencyCheck {
  const ids = new Set(nodes.map((node) => node.id))
  const edges = new Map<string, string[]>()
  const dropped: DependencyCheck['dropped'] = []
  let linked = false
  for (const node of nodes) {
    const valid: string[] = []
    for (const dependency of node.dependsOn) {
      // An agent that depends on itself is kept: a cycle of one, refused as any other.
      if (ids.has(dependency) || siblings.has(dependency)) {
        if (!valid.includes(dependency)) valid.push(dependency)
      } else {
        dropped.push({ id: node.id, dependsOn: dependency })
      }
    }
    edges.set(node.id, valid)
    if (valid.length > 0) linked = true
  }
  // No edge, no cycle: a launch of many independent agents skips the search.
  return { edges, dropped, cycle: linked ? findCycle(edges) : undefined }
}

/** Iterative depth-first search (plans can be long chains); returns the first cycle found. */
export function findCycle(edges: ReadonlyMap<string, readonly string[]>): string[] | undefined {
  const state = new Map<string, 'open' | 'done'>()
  for (const start of edges.keys()) {
    if (state.has(start)) continue
    const path: string[] = []
    const stack: { id: string; next: number }[] = [{ id: start, next: 0 }]
    state.set(start, 'open')
    path.push(start)
    while (stack.length > 0) {
      const frame = stack[stack.length - 1]!
      const targets = edges.get(frame.id) ?? []
      if (frame.next < targets.length) {
        const target = targets[frame.next++]!
        if (!edges.has(target)) continue
        const seen = state.get(target)
        if (seen === 'open') return [...path.slice(path.indexOf(target)), target]
        if (seen === undefined) {
          state.set(target, 'open')
          path.push(target)
          stack.push({ id: target, next: 0 })
        }
      } else {
        state.set(frame.id, 'done')
        path.pop()
        stack.pop()
      }
    }
  }
  return undefined
}

/** A launch with a cycle, run one agent after another in launch order (`onCycle: 'sequential'`). */
export interface SequentialOrder {
  /** For each id, the `depends_on` it keeps: those that run before it (its results come from them). */
  edges: Map<string, string[]>
  /** For each id, the agent just before it when that is not one of its `depends_on`: it waits for it only. */
  after: Map<string, string[]>
  /** `depends_on` entries naming an agent that runs after it: their results cannot be given. */
  dropped: { id: string; dependsOn: string }[]
}

/**
 * Orders `ids` one after another. Each keeps the `depends_on` (`edges`) on agents before it, and on
 * ids not in `ids` (launched earlier, they cannot close a cycle); the others are dropped.
 */
export function sequentialOrder(
  ids: readonly string[],
  edges: ReadonlyMap<string, readonly string[]>,
): SequentialOrder {
  const position = new Map(ids.map((id, index) => [id, index]))
  const kept = new Map<string, string[]>()
  const after = new Map<string, string[]>()
  const dropped: SequentialOrder['dropped'] = []
  ids.forEach((id, index) => {
    const own: string[] = []
    for (const dependency of edges.get(id) ?? []) {
      if ((position.get(dependency) ?? -1) < index) own.push(dependency)
      else dropped.push({ id, dependsOn: dependency })
    }
    kept.set(id, own)
    const previous = ids[index - 1]
    after.set(id, previous === undefined || own.includes(previous) ? [] : [previous])
  })
  return { edges: kept, after, dropped }
}

/** A cycle as messages name it: `dependency cycle x → y → x`. */
export function describeCycle(cycle: readonly string[]): string {
  return `dependency cycle ${cycle.join(' → ')}`
}

/**
 * Groups agents into layers for display: layer 0 has no dependencies, layer n depends only on
 * earlier layers. Scheduling does not wait for layers: each agent starts when its own
 * dependencies are done. Agents on a cycle are left out.
 */
export function dependencyLayers(edges: ReadonlyMap<string, readonly string[]>): string[][] {
  const layerOf = new Map<string, number>()
  const layers: string[][] = []
  let remaining = [...edges.keys()]
  while (remaining.length > 0) {
    const placed: string[] = []
    for (const id of remaining) {
      const deps = (edges.get(id) ?? []).filter((d) => edges.has(d))
      if (deps.every((d) => layerOf.has(d))) placed.push(id)
    }
    if (placed.length === 0) break
    const layer = layers.length
    for (const id of placed) layerOf.set(id, layer)
    layers.push(placed)
    const placedSet = new Set(placed)
    remaining = remaining.filter((id) => !placedSet.has(id))
  }
  return layers
}
