import { defaultMaxRetries } from '../models/retry.js'
import {
  type Admission,
  free,
  type Go,
  type KindStats,
  kindStats,
  type SlotRequest,
  spacing,
} from './admission.js'
import { AgentSlots } from './agent-slots.js'
import { PriorityQueue } from './priority-queue.js'
import { fullBuckets, type RateState, settleCall, takeCall } from './rate-buckets.js'
import { checkSchedulerOptions, type SchedulerOptions } from './scheduler-options.js'
import type { SharedCall, SharedLimits, SharedStart } from './shared-limits.js'
import { GrantedSlot, type Slot, type SlotOwner, type Waiter } from './slot.js'

export type { SlotRequest } from './admission.js'
export type { RateLimit } from './rate-buckets.js'
export type { SchedulerOptions } from './scheduler-options.js'
export type { Slot } from './slot.js'

export interface SchedulerStats {
  inFlight: number
  queued: number
  maxInFlight: number
}

/**
 * Admits model calls: a semaphore over calls in flight, priorities (higher first, FIFO within),
 * per-model token buckets for requests and tokens, a run's token budget, and a delay between
 * starts. A call's tokens are reserved (an estimate) before it starts and settled when it ends.
 * With `share`, rate limits, the semaphore, the interval between starts and each run's budget
 * are counted in a store shared by workers. An agent that waits here holds no model call.
 */
export class Scheduler implements SlotOwner {
  private readonly queue = new PriorityQueue<Waiter>()
  /** Only rate-limited models and kinds under a token limit get state: a server must not grow per call. */
  private readonly buckets = new Map<string, RateState>()
  private readonly kinds = new Map<string, KindStats>()
  private readonly sharedRetryAt = new Map<string, number>()
  private shared: SharedLimits | undefined
  /** A call asking the shared store: the queue waits for its answer. */
  private probing: Waiter | undefined
  private inFlight = 0
  /** Waiters that have not got their slot, failed or given up: queued, or being asked about. */
  private waiting = 0
  private maxInFlight = 0
  private lastStart = Number.NEGATIVE_INFINITY
  private timer: NodeJS.Timeout | undefined
  private timerAt = Number.POSITIVE_INFINITY
  private readonly limit: number

  /** Places for agents at work, when `maxConcurrentAgents` bounds them. */
  readonly agents: AgentSlots | undefined
  /** Retries of a call's transient failures, for models that do not retry their own. */
  readonly maxModelRetries: number

  constructor(private readonly options: SchedulerOptions = {}) {
    checkSchedulerOptions(options)
    this.limit = options.maxConcurrentModelCalls ?? Number.POSITIVE_INFINITY
    this.agents =
      options.maxConcurrentAgents === undefined ? undefined : new AgentSlots(options.maxConcurrentAgents)
    this.maxModelRetries = options.maxModelRetries ?? defaultMaxRetries
  }

  /** Counts rate limits and calls in flight in `shared` from now on; returns the undo. */
  share(shared: SharedLimits): () => void {
    this.shared = shared
    return () => {
      if (this.shared === shared) this.shared = undefined
    }
  }

  /**
   * A slot now, when nothing is in the way (no limit reached, nobody queued, no shared store to
   * ask), so the call can start in the same tick; otherwise undefined, and the caller waits in `acquire`.
   */
  tryAcquire(request: SlotRequest): Slot | undefined {
    if (this.inFlight >= this.limit || this.queue.size > 0 || this.probing) return undefined
    const admission = this.admit(request, performance.now(), undefined)
    if (!admission.go || admission.shared) return undefined
    return this.open(request, 0, admission, undefined)
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
        this.settled(waiter)
        reject(signal.reason)
        this.pump()
      }
      const grant = (slot: Slot) => {
        signal.removeEventListener('abort', aborted)
        resolve(slot)
      }
      const fail = (error: unknown) => {
        signal.removeEventListener('abort', aborted)
        reject(error)
      }
      const waiter: Waiter = { request, enqueuedAt: performance.now(), seq: 0, grant, fail, done: false }
      this.waiting++
      signal.addEventListener('abort', aborted)
      waiter.seq = this.queue.push(waiter, request.priority)
      this.pump()
    })
  }

  stats(): SchedulerStats {
    return { inFlight: this.inFlight, queued: this.waiting, maxInFlight: this.maxInFlight }
  }

  /** A waiter got its slot, failed or gave up: it no longer counts, wherever it is. */
  private settled(waiter: Waiter): void {
    waiter.done = true
    this.waiting--
  }

  private pump(): void {
    const blocked: Waiter[] = []
    // What blocked a waiter blocks the ones behind it too (a model, a kind, a budget): first come, first served.
    let blockers: Set<unknown> | undefined
    let retryAt = Number.POSITIVE_INFINITY
    while (this.inFlight < this.limit && this.queue.size > 0 && !this.probing) {
      const waiter = this.queue.pop()!
      if (waiter.done) continue
      const { request } = waiter
      const now = performance.now()
      const admission = this.admit(request, now, blockers)
      if (!admission.go) {
        if ('error' in admission) {
          this.settled(waiter)
          waiter.fail(admission.error)
          continue
        }
        blocked.push(waiter)
        blockers ??= new Set()
        blockers.add(admission.on)
        retryAt = Math.min(retryAt, admission.until)
        if (admission.on === spacing) break
        continue
      }
      if (admission.shared) this.ask(waiter, admission)
      else this.start(waiter, now, admission, undefined)
    }
    for (const waiter of blocked) this.queue.push(waiter, waiter.request.priority, waiter.seq)
    if (this.waiting === 0 && this.timer !== undefined) {
      // Nobody waits any more (they gave up): a timer set for them would only keep the process up.
      clearTimeout(this.timer)
      this.timer = undefined
      this.timerAt = Number.POSITIVE_INFINITY
    }
    // A refund can make a waiter ready sooner than the timer already set.
    if (retryAt < this.timerAt) {
      clearTimeout(this.timer)
      this.timerAt = retryAt
      this.timer = setTimeout(
        () => {
          this.timer = undefined
          this.timerAt = Number.POSITIVE_INFINITY
          this.pump()
        },
        Math.max(1, retryAt - performance.now()),
      )
    }
  }

  /** Whether `request` may start now, by every limit this process can check without the shared store. */
  private admit(request: SlotRequest, now: number, blockers: Set<unknown> | undefined): Admission {
    const { model, budget } = request
    const interval = this.options.startIntervalMs
    if (interval !== undefined && this.lastStart + interval > now) {
      return { go: false, until: this.lastStart + interval, on: spacing }
    }
    const rate = this.options.rateLimits?.[model]
    if (blockers?.has(model)) return { go: false, until: Number.POSITIVE_INFINITY, on: model }
    const sharedAt = this.shared ? (this.sharedRetryAt.get(model) ?? 0) : 0
    if (sharedAt > now) return { go: false, until: sharedAt, on: model }
    let reserve = 0
    let stats: KindStats | undefined
    if (rate?.tokensPerMinute !== undefined || (budget !== undefined && budget.max !== null)) {
      stats = kindStats(this.kinds, request)
      if (blockers?.has(stats)) return { go: false, until: Number.POSITIVE_INFINITY, on: stats }
      // Nothing of this kind has ended yet, so its size is unknown: one at a time until one has.
      if (stats.ended === 0 && stats.inFlight > 0) {
        return { go: false, until: Number.POSITIVE_INFINITY, on: stats }
      }
      const average = stats.counted > 0 ? Math.ceil(stats.tokens / stats.counted) : 0
      reserve = Math.max(request.estimatedTokens ?? 0, average)
    }
    // A budget counted in the shared store is checked there, with the other processes' calls.
    const sharedBudget = this.shared !== undefined && budget?.stored !== undefined && budget.max !== null
    if (budget && !sharedBudget && !budget.fits(reserve)) {
      if (budget.reserved === 0) return { go: false, error: budget.exceeded(reserve) }
      return { go: false, until: Number.POSITIVE_INFINITY, on: budget }
    }
    if (blockers?.has(budget)) return { go: false, until: Number.POSITIVE_INFINITY, on: budget }
    const shared =
      this.shared !== undefined &&
      (rate !== undefined || this.limit < Number.POSITIVE_INFINITY || sharedBudget || interval !== undefined)
    if (!rate && !shared && !stats) return free
    if (!rate || shared) return { go: true, reserve, rate: undefined, stats, shared }
    const decision = takeCall(this.buckets.get(model) ?? fullBuckets, rate, reserve, now)
    if (!decision.ok) return { go: false, until: now + decision.waitMs, on: model }
    return { go: true, reserve, rate: decision.state, stats, shared: false }
  }

  /** Asks the shared store for `waiter`'s place; the queue waits for the answer. */
  private ask(waiter: Waiter, admission: Go): void {
    this.probing = waiter
    const { model, budget } = waiter.request
    const call: SharedCall = {
      model,
      tokens: admission.reserve,
      rate: this.options.rateLimits?.[model],
      maxConcurrent: this.options.maxConcurrentModelCalls,
    }
    if (this.options.startIntervalMs !== undefined) call.startIntervalMs = this.options.startIntervalMs
    if (budget?.stored && budget.max !== null) {
      call.budget = { runId: budget.stored.runId, max: budget.max, spent: budget.stored.spent }
    }
    const answered = (answer: SharedStart) => {
      this.probing = undefined
      if (answer.started && waiter.done) answer.end(0)
      else if (answer.started) {
        this.start(waiter, performance.now(), admission, answer)
      } else if ('overBudget' in answer) {
        if (!waiter.done) {
          this.settled(waiter)
          waiter.fail(budget!.exceeded(admission.reserve, answer.overBudget.used))
        }
      } else if (!waiter.done) {
        this.sharedRetryAt.set(model, performance.now() + answer.retryInMs)
        this.queue.push(waiter, waiter.request.priority, waiter.seq)
      }
      this.pump()
    }
    const failed = (error: unknown) => {
      this.probing = undefined
      if (!waiter.done) {
        this.settled(waiter)
        waiter.fail(error)
      }
      this.pump()
    }
    this.shared!.tryStart(call).then(answered, failed)
  }

  private start(waiter: Waiter, now: number, admission: Go, lease: SharedStart | undefined): void {
    this.settled(waiter)
    waiter.grant(this.open(waiter.request, now - waiter.enqueuedAt, admission, lease))
  }

  /** Books a call that starts now: its place, its reservation, its bucket. */
  private open(
    request: SlotRequest,
    waitedMs: number,
    admission: Go,
    lease: SharedStart | undefined,
  ): GrantedSlot {
    this.inFlight++
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight)
    this.lastStart = performance.now()
    if (admission.rate) this.buckets.set(request.model, admission.rate)
    request.budget?.reserve(admission.reserve)
    if (admission.stats) admission.stats.inFlight++
    return new GrantedSlot(this, waitedMs, request, admission.reserve, admission.stats, lease)
  }

  /** A slot's call ended: its reservation is settled and its place goes to the next waiter. */
  ended(slot: GrantedSlot, tokens: number): void {
    this.inFlight--
    const { request, reserved, stats, lease } = slot
    request.budget?.settle(reserved, tokens)
    if (stats) {
      stats.inFlight--
      stats.ended++
      if (tokens > 0) {
        stats.counted++
        stats.tokens += tokens
      }
    }
    if (lease?.started) lease.end(tokens)
    else {
      const rate = this.options.rateLimits?.[request.model]
      const state = rate && this.buckets.get(request.model)
      if (state) this.buckets.set(request.model, settleCall(state, rate, reserved, tokens))
    }
    this.pump()
  }
}
