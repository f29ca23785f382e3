/** Agents in tree order: each parent followed by its children, in the order they started. */
export function treeOrder<T extends { id: string; parentId: string | null; startedAt: number }>(
  nodes: Iterable<T>,
): T[] {
  const all = [...nodes]
  const byParent = new Map<string | null, T[]>()
  const ids = new Set(all.map((node) => node.id))
  for (const node of all) {
    // An agent whose parent is unknown here (a partial view) is shown at the top.
    const key = node.parentId !== null && ids.has(node.parentId) ? node.parentId : null
    const siblings = byParent.get(key) ?? []
    siblings.push(node)
    byParent.set(key, siblings)
  }
  const ordered: T[] = []
  const visit = (parentId: string | null) => {
    const children = (byParent.get(parentId) ?? []).sort((a, b) => a.startedAt - b.startedAt)
    for (const child of children) {
      ordered.push(child)
      visit(child.id)
    }
  }
  visit(null)
  return ordered
}
