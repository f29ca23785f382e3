import type { CohortEvent } from './types.js'

export type EventListener = (event: CohortEvent) => void

/**
 * Fan-out of one run's events. Listeners run synchronously in order; one that throws is
 * reported once and never breaks the run. `iterate()` buffers for slow consumers.
 */
export class EventBus {
  private readonly listeners = new Set<EventListener>()
  private closed = false
  private readonly closeWaiters = new Set<() => void>()

  emit(event: CohortEvent): void {
    for (const listener of this.listeners) {
      try {
        listener(event)
      } catch (error) {
        this.listeners.delete(listener)
        process.emitWarning(`cohort: an event listener threw and was removed: ${String(error)}`)
      }
    }
  }

  subscribe(listener: EventListener): () => void {
    this.listeners.add(listener)
    return () => this.listeners.delete(listener)
  }

  /** No more events will come: iterators finish after draining what they buffered. */
  close(): void {
    this.closed = true
    for (const wake of this.closeWaiters) wake()
    this.closeWaiters.clear()
  }

  /** Whether anyone listens: events are not even built when nobody does. */
  get hasListeners(): boolean {
    return this.listeners.size > 0
  }

  get isClosed(): boolean {
    return this.closed
  }

  async *iterate(): AsyncGenerator<CohortEvent> {
    const buffer: CohortEvent[] = []
    let wake: (() => void) | undefined
    const unsubscribe = this.subscribe((event) => {
      buffer.push(event)
      wake?.()
    })
    try {
      while (true) {
        if (buffer.length > 0) {
          yield buffer.shift()!
          continue
        }
        if (this.closed) return
        await new Promise<void>((resolve) => {
          wake = resolve
          this.closeWaiters.add(resolve)
        })
        if (wake) this.closeWaiters.delete(wake)
        wake = undefined
      }
    } finally {
      unsubscribe()
    }
  }
}
