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
  private readonly queue = new PriorityQueue<Waiter>()

  constructor(readonly limit: number) {}

  /** Runs `work` once a place is free, and frees it when `work` settles; an abort leaves the queue. */
  run<T>(priority: number, signal: AbortSignal, work: () => Promise<T>): Promise<T> {
    if (this.working < this.limit && this.queue.size === 0) return this.start(work)
    return new Promise<T>((resolve, reject) => {
      const waiter: Waiter = {
        start: () => {
          signal.removeEventListener('abort', waiter.leave)
          this.start(work).then(resolve, reject)
        },
        leave: () => {
          waiter.done = true
          reject(signal.reason)
        },
        done: false,
      }
      if (signal.aborted) return waiter.leave()
      signal.addEventListener('abort', waiter.leave, { once: true })
      this.queue.push(waiter, priority)
    })
  }

  /** Agents at work now, and waiting for a place. */
  get stats(): { working: number; queued: number } {
    return { working: this.working, queued: this.queue.size }
  }

  private start<T>(work: () => Promise<T>): Promise<T> {
    this.working++
    let running: Promise<T>
    try {
      running = work()
    } catch (error) {
      running = Promise.reject(error)
    }
    return running.finally(() => {
      this.working--
      this.next()
    })
  }

  private next(): void {
    while (this.working < this.limit && this.queue.size > 0) {
      const waiter = this.queue.pop()!
      if (!waiter.done) waiter.start()
    }
  }
}
