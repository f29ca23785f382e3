import { PriorityQueue } from './priority-queue.js'

interface Waiter {
  start: () => void
  leave: () => void
  done: boolean
}

/**
 * At most `limit` agents at work at once across a runtime (`maxConcurrentAgents`, the seeds'
 * `max_parallel`): an agent holds a place while its model call or tool call runs, and none while
 * it waits on its children or on a person, so a parent never keeps its children from starting.
 * Higher priority first, first come first served among equals.
 */
export class AgentSlots {
  private working = 0
  /** Waiters still waiting: an aborted one stays in the heap until popped, but counts no more. */
  private waiting = 0
  private readonly queue = new PriorityQueue<Waiter>()

  constructor(readonly limit: number) {}

  /**
   * Runs `work` once a place is free, and frees it when `work` settles; an abort leaves the queue.
   * `queued` is told when no place is free, so `work` waits its turn.
   */
  run<T>(priority: number, signal: AbortSignal, work: () => Promise<T>, queued?: () => void): Promise<T> {
    if (this.working < this.limit && this.waiting === 0) return this.start(work, signal)
    return new Promise<T>((resolve, reject) => {
      const waiter: Waiter = {
        start: () => {
          this.waiting--
          signal.removeEventListener('abort', waiter.leave)
          this.start(work, signal).then(resolve, reject)
        },
        leave: () => {
          waiter.done = true
          this.waiting--
          reject(signal.reason)
        },
        done: false,
      }
      if (signal.aborted) return reject(signal.reason)
      signal.addEventListener('abort', waiter.leave, { once: true })
      this.waiting++
      this.queue.push(waiter, priority)
      queued?.()
    })
  }

  /** Agents at work now, and waiting for a place. */
  get stats(): { working: number; queued: number } {
    return { working: this.working, queued: this.waiting }
  }

  /**
   * The place is freed once: when `work` settles, or when its agent stops (timed out, cancelled),
   * for a tool or a model that ignores the abort must not keep a place from the agents that work.
   */
  private start<T>(work: () => Promise<T>, signal: AbortSignal): Promise<T> {
    this.working++
    let freed = false
    const free = () => {
      if (freed) return
      freed = true
      signal.removeEventListener('abort', free)
      this.working--
      this.next()
    }
    signal.addEventListener('abort', free, { once: true })
    let running: Promise<T>
    try {
      running = work()
    } catch (error) {
      running = Promise.reject(error)
    }
    return running.finally(free)
  }

  private next(): void {
    while (this.working < this.limit && this.queue.size > 0) {
      const waiter = this.queue.pop()!
      if (!waiter.done) waiter.start()
    }
  }
}
