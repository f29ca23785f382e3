import { PriorityQueue } from './priority-queue.js'

export interface RateLimit {
  requestsPerMinute?: number
  tokensPerMinute?: number
}

export interface SchedulerOptions {
  /** Model calls in flight across the runtime (default: unlimited). */
  maxConcurrentModelCalls?: number
  /** Per model name (`ChatModel.name`). */
  rateLimits?: Record<string, RateLimit>
  /** Least time between the starts of two model calls, in ms. */
  startIntervalMs?: number
}

export interface SlotRequest {
  priority: number
  model: string
  /** A queued call leaves the queue when its effect is aborted. */
  signal: AbortSignal
}

/** A granted model call; `release` frees the slot and books the tokens it used. */
export interface Slot {
  /** How long the call waited in the queue, in ms. */
  waitedMs: number
  release(tokens: number): void
}

export interface SchedulerStats {
  inFlight: number
  queued: number
  maxInFlight: number
}

interface Waiter {
  request: SlotRequest
  enqueuedAt: number
  grant: (slot: Slot) => void
  done: boolean
}

const minute = 60_000

/** A rate-limited model's calls and tokens of the last minute. */
interface Window {
  starts: number[]
  tokens: { at: number; count: number }[]
}

/** A granted call; released once, later releases do nothing. */
class GrantedSlot implements Slot {
  private released = false

  constructor(
    private readonly scheduler: Scheduler,
    readonly waitedMs: number,
    private readonly window: Window | undefined,
  ) {}

  release(tokens: number): void {
    if (this.released) return
    this.released = true
    this.scheduler.ended(this.window, tokens)
  }
}

/**
 * Admits model calls: a semaphore over calls in flight, priorities (higher first, FIFO
 * within), per-model requests and tokens per minute, and a delay between starts. An agent
 * that waits here holds no model call.
 */
export class Scheduler {
  private readonly queue = new PriorityQueue<Waiter>()
  private readonly windows = new Map<string, Window>()
  private inFlight = 0
  private maxInFlight = 0
  private lastStart = Number.NEGATIVE_INFINITY
  private timer: NodeJS.Timeout | undefined
  private readonly limit: number

  constructor(private readonly options: SchedulerOptions = {}) {
    this.limit = options.maxConcurrentModelCalls ?? Number.POSITIVE_INFINITY
  }

  /**
   * A slot now, when nothing is in the way (no limit reached, nobody queued, no throttle), so
   * the call can start in the same tick; otherwise undefined, and the caller waits in `acquire`.
   */
  tryAcquire(request: SlotRequest): Slot | undefined {
    if (this.inFlight >= this.limit || this.queue.size > 0 || this.throttled(request.model)) return undefined
    // Not throttled: no window to book, no waiter to grant (a waiter and its closures per call cost).
    this.inFlight++
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight)
    this.lastStart = performance.now()
    return new GrantedSlot(this, 0, undefined)
  }

  acquire(request: SlotRequest): Promise<Slot> {
    // Nothing to wait for: no waiter, no abort listener.
    const now = this.tryAcquire(request)
    if (now) return Promise.resolve(now)
    return new Promise((resolve, reject) => {
      const { signal } = request
      if (signal.aborted) return reject(signal.reason)
      const aborted = () => {
        if (waiter.done) return
        waiter.done = true
        reject(signal.reason)
        this.pump()
      }
      const grant = (slot: Slot) => {
        signal.removeEventListener('abort', aborted)
        resolve(slot)
      }
      const waiter: Waiter = { request, enqueuedAt: performance.now(), grant, done: false }
      signal.addEventListener('abort', aborted)
      this.queue.push(waiter, request.priority)
      this.pump()
    })
  }

  stats(): SchedulerStats {
    return { inFlight: this.inFlight, queued: this.queue.size, maxInFlight: this.maxInFlight }
  }

  private pump(): void {
    const blocked: Waiter[] = []
    let retryAt = Number.POSITIVE_INFINITY
    while (this.inFlight < this.limit && this.queue.size > 0) {
      const waiter = this.queue.pop()!
      if (waiter.done) continue
      const now = performance.now()
      const readyAt = Math.max(
        this.rateReadyAt(waiter.request.model, now),
        this.lastStart + (this.options.startIntervalMs ?? 0),
      )
      if (readyAt > now) {
        blocked.push(waiter)
        retryAt = Math.min(retryAt, readyAt)
        if (this.options.startIntervalMs) break
        continue
      }
      this.start(waiter, now)
    }
    for (const waiter of blocked) this.queue.push(waiter, waiter.request.priority)
    if (retryAt < Number.POSITIVE_INFINITY && !this.timer) {
      this.timer = setTimeout(
        () => {
          this.timer = undefined
          this.pump()
        },
        Math.max(1, retryAt - performance.now()),
      )
    }
  }

  private throttled(model: string): boolean {
    return this.options.startIntervalMs !== undefined || this.options.rateLimits?.[model] !== undefined
  }

  private start(waiter: Waiter, now: number): void {
    waiter.done = true
    this.inFlight++
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight)
    this.lastStart = now
    // Windows are kept only for rate-limited models: a long-running server must not grow a list per call.
    const window = this.options.rateLimits?.[waiter.request.model]
      ? this.window(waiter.request.model)
      : undefined
    window?.starts.push(now)
    waiter.grant(new GrantedSlot(this, now - waiter.enqueuedAt, window))
  }

  /** A slot's call ended: its place goes to the next waiter. */
  ended(window: Window | undefined, tokens: number): void {
    this.inFlight--
    if (tokens > 0) window?.tokens.push({ at: performance.now(), count: tokens })
    this.pump()
  }

  /** When the model's per-minute windows admit one more call. */
  private rateReadyAt(model: string, now: number): number {
    const limit = this.options.rateLimits?.[model]
    if (!limit) return now
    const window = this.window(model)
    while (window.starts.length > 0 && window.starts[0]! <= now - minute) window.starts.shift()
    while (window.tokens.length > 0 && window.tokens[0]!.at <= now - minute) window.tokens.shift()
    let readyAt = now
    if (limit.requestsPerMinute !== undefined && window.starts.length >= limit.requestsPerMinute) {
      readyAt = Math.max(readyAt, window.starts[window.starts.length - limit.requestsPerMinute]! + minute)
    }
    if (limit.tokensPerMinute !== undefined) {
      let used = window.tokens.reduce((sum, entry) => sum + entry.count, 0)
      for (const entry of window.tokens) {
        if (used < limit.tokensPerMinute) break
        used -= entry.count
        readyAt = Math.max(readyAt, entry.at + minute)
      }
    }
    return readyAt
  }

  private window(model: string) {
    let window = this.windows.get(model)
    if (!window) {
      window = { starts: [], tokens: [] }
      this.windows.set(model, window)
    }
    return window
  }
}
