/** A binary heap: highest priority first, first in first out among equals. */
export class PriorityQueue<T> {
  private readonly heap: { item: T; priority: number; seq: number }[] = []
  private seq = 0

  get size(): number {
    return this.heap.length
  }

  /**
   * Adds `item`; returns its place in line among equals. An item put back after waiting passes
   * its old place as `seq`, so it keeps it.
   */
  push(item: T, priority: number, seq = this.seq++): number {
    this.heap.push({ item, priority, seq })
    this.up(this.heap.length - 1)
    return seq
  }

  peek(): T | undefined {
    return this.heap[0]?.item
  }

  pop(): T | undefined {
    const top = this.heap[0]
    const last = this.heap.pop()
    if (top && last && this.heap.length > 0) {
      this.heap[0] = last
      this.down(0)
    }
    return top?.item
  }

  private before(a: number, b: number): boolean {
    const x = this.heap[a]!
    const y = this.heap[b]!
    return x.priority > y.priority || (x.priority === y.priority && x.seq < y.seq)
  }

  private swap(a: number, b: number): void {
    const tmp = this.heap[a]!
    this.heap[a] = this.heap[b]!
    this.heap[b] = tmp
  }

  private up(index: number): void {
    let i = index
    while (i > 0) {
      const parent = (i - 1) >> 1
      if (!this.before(i, parent)) return
      this.swap(i, parent)
      i = parent
    }
  }

  private down(index: number): void {
    let i = index
    for (;;) {
      const left = 2 * i + 1
      const right = left + 1
      let best = i
      if (left < this.heap.length && this.before(left, best)) best = left
      if (right < this.heap.length && this.before(right, best)) best = right
      if (best === i) return
      this.swap(i, best)
      i = best
    }
  }
}
