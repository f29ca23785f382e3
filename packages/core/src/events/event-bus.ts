import { describeValue, errorMessage, InvalidInputError } from '../errors.js'
import { isThenable } from '../thenable.js'
import { type CohortEvent, type CohortEventType, cohortEventTypes } from './types.js'

export type EventListener = (event: CohortEvent) => void

/**
 * Fan-out of one run's events, and on to `parent` (the runtime's bus, for every run). Listeners
 * run synchronously in order; one that throws, or returns a promise that rejects, is reported
 * once, removed, and never breaks the run.
 * `iterate()` buffers for slow consumers.
 */
export class EventBus {
  private readonly listeners = new Set<EventListener>()
  private closed = false
  private readonly closeWaiters = new Set<() => void>()

  constructor(private readonly parent?: EventBus) {}

  emit(event: CohortEvent): void {
    for (const listener of this.listeners) {
      try {
        const returned: unknown = listener(event)
        if (isThenable(returned)) returned.then(undefined, (error) => this.remove(listener, error))
      } catch (error) {
        this.remove(listener, error)
      }
    }
    this.parent?.emit(event)
  }

  // An async listener may have been called again before its first rejection: report it once.
  private remove(listener: EventListener, error: unknown): void {
    if (!this.listeners.delete(listener)) return
    process.emitWarning(`cohort: an event listener threw and was removed: ${errorMessage(error)}`)
  }

  subscribe(listener: EventListener): () => void {
    checkListener(listener)
    this.listeners.add(listener)
    return () => this.listeners.delete(listener)
  }

  /** Subscribes to every event (`'event'`) or to one type; returns the unsubscribe function. */
  on<T extends CohortEventType>(
    type: T | 'event',
    listener: (event: Extract<CohortEvent, { type: T }>) => void,
  ): () => void {
    if (type === 'event') return this.subscribe(listener as EventListener)
    // Refused here: a misspelt type would match nothing and say nothing, and a listener that is
    // no function would be found out only at the first event.
    if (!knownTypes.has(type)) {
      throw new InvalidInputError(
        `unknown event type ${String(JSON.stringify(type))}: expected "event" (every event) or one of ${cohortEventTypes.join(', ')}`,
      )
    }
    checkListener(listener)
    // The listener's value is passed on, so an async listener's rejection is caught too.
    return this.subscribe((event) =>
      event.type === type ? listener(event as Extract<CohortEvent, { type: T }>) : undefined,
    )
  }

  /** No more events will come: iterators finish after draining what they buffered. */
  close(): void {
    this.closed = true
    for (const wake of this.closeWaiters) wake()
    this.closeWaiters.clear()
  }

  /** Whether anyone listens: events are not even built when nobody does. */
  get hasListeners(): boolean {
    return this.listeners.size > 0 || this.parent?.hasListeners === true
  }

  get isClosed(): boolean {
    return this.closed
  }

  /**
   * Every event from this call on. Subscribed at once, not at the first read, so the events that
   * come between the call and the first `next()` are kept too. `return()` (a `break`, a client
   * gone) unsubscribes at once and ends a pending `next()`, even before the first read: a
   * generator's `finally` would run only once started, and only after its pending read.
   */
  iterate(): AsyncIterableIterator<CohortEvent> {
    const buffer: CohortEvent[] = []
    const readers: ((result: IteratorResult<CohortEvent, undefined>) => void)[] = []
    let ended = false
    const end = () => {
      ended = true
      unsubscribe()
      this.closeWaiters.delete(end)
      for (const read of readers.splice(0)) read({ done: true, value: undefined })
    }
    const unsubscribe = this.subscribe((event) => {
      const read = readers.shift()
      if (read) read({ done: false, value: event })
      else buffer.push(event)
    })
    // What is buffered stays readable after the close; only new reads end.
    if (this.closed) end()
    else this.closeWaiters.add(end)
    return {
      next: () => {
        const event = buffer.shift()
        if (event) return Promise.resolve({ done: false, value: event })
        if (ended) return Promise.resolve({ done: true, value: undefined })
        return new Promise((resolve) => readers.push(resolve))
      },
      return: () => {
        buffer.length = 0
        end()
        return Promise.resolve({ done: true, value: undefined })
      },
      [Symbol.asyncIterator]() {
        return this
      },
    }
  }
}

const knownTypes: ReadonlySet<string> = new Set(cohortEventTypes)

function checkListener(listener: unknown): void {
  if (typeof listener !== 'function') {
    throw new InvalidInputError(
      `an event listener must be a function (event) => void, got ${describeValue(listener)}`,
    )
  }
}
