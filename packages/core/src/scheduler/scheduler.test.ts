import { afterEach, beforeEach, describe, expect, test, vi } from 'vitest'
import type { RateLimit } from './rate-buckets.js'
import { Scheduler, type Slot, type SlotRequest } from './scheduler.js'
import type { SharedCall, SharedLimits } from './shared-limits.js'
import { TokenBudget } from './token-budget.js'

const request = (model: string, extra: Partial<SlotRequest> = {}) => {
  const controller = new AbortController()
  const made: SlotRequest & { controller: AbortController } = {
    priority: 0,
    model,
    signal: controller.signal,
    controller,
    ...extra,
  }
  return made
}

test('calls of models without a rate limit leave no per-call history behind (a server runs for months)', async () => {
  const scheduler = new Scheduler({ rateLimits: { limited: { requestsPerMinute: 10_000 } } })
  for (let i = 0; i < 1_000; i++) (await scheduler.acquire(request('free'))).release(50)
  for (let i = 0; i < 10; i++) (await scheduler.acquire(request('limited'))).release(50)
  const state = scheduler as unknown as { buckets: Map<string, unknown>; kinds: Map<string, unknown> }
  expect([...state.buckets.keys()]).toEqual(['limited'])
  expect(state.kinds.size).toBe(0)
  expect(scheduler.stats()).toEqual({ inFlight: 0, queued: 0, maxInFlight: 1 })
})

test('with nothing in the way a slot is granted at once; a full semaphore queues by priority', async () => {
  const scheduler = new Scheduler({ maxConcurrentModelCalls: 1 })
  const first = await scheduler.acquire(request('m'))
  const order: string[] = []
  const queued = (priority: number, name: string) =>
    scheduler.acquire({ ...request('m'), priority }).then((slot) => {
      order.push(name)
      return slot
    })
  const low = queued(0, 'low')
  const high = queued(5, 'high')
  expect(scheduler.stats()).toMatchObject({ inFlight: 1, queued: 2 })
  first.release(0)
  ;(await high).release(0)
  ;(await low).release(0)
  expect(order).toEqual(['high', 'low'])
})

test('a slot released twice frees its place once, whether it was granted at once or after waiting', async () => {
  const scheduler = new Scheduler({ maxConcurrentModelCalls: 2 })
  const now = scheduler.tryAcquire(request('m'))!
  now.release(10)
  now.release(10)
  expect(scheduler.stats()).toMatchObject({ inFlight: 0 })
  const held = [scheduler.tryAcquire(request('m'))!, scheduler.tryAcquire(request('m'))!]
  expect(scheduler.tryAcquire(request('m'))).toBeUndefined()
  const later = scheduler.acquire(request('m'))
  held[0]!.release(0)
  const waited = await later
  waited.release(0)
  waited.release(0)
  expect(scheduler.stats()).toEqual({ inFlight: 1, queued: 0, maxInFlight: 2 })
  held[1]!.release(0)
  expect(scheduler.stats()).toMatchObject({ inFlight: 0 })
})

test('a queued call whose effect is aborted leaves the queue, and the next one gets the slot', async () => {
  const scheduler = new Scheduler({ maxConcurrentModelCalls: 1 })
  const first = await scheduler.acquire(request('m'))
  const cancelled = request('m')
  const waiting = scheduler.acquire(cancelled)
  const next = scheduler.acquire(request('m'))
  cancelled.controller.abort(new Error('cancelled'))
  await expect(waiting).rejects.toThrow('cancelled')
  first.release(0)
  const slot = await next
  expect(scheduler.stats()).toMatchObject({ inFlight: 1, queued: 0 })
  slot.release(0)
  // Aborted before it asks: refused without queueing.
  const late = request('m')
  late.controller.abort(new Error('too late'))
  await scheduler.acquire(request('m')).then((held) =>
    expect(scheduler.acquire(late))
      .rejects.toThrow('too late')
      .finally(() => held.release(0)),
  )
})

describe('token limits hold before a call starts (fake timers)', () => {
  beforeEach(() => {
    vi.useFakeTimers()
  })
  afterEach(() => {
    vi.useRealTimers()
  })

  /** Asks for `count` slots at once; `granted` gets each slot's index and the fake time it started. */
  const askAll = (scheduler: Scheduler, count: number, extra: Partial<SlotRequest> = {}) => {
    const granted: { index: number; at: number; slot: Slot }[] = []
    const started = performance.now()
    const pending = Array.from({ length: count }, (_, index) =>
      scheduler.acquire(request('m', extra)).then((slot) => {
        granted.push({ index, at: Math.round(performance.now() - started), slot })
        return slot
      }),
    )
    return { granted, pending }
  }

  test('requestsPerMinute 120 lets 120 calls start in the same millisecond: they start two at once, then one every 500 ms', async () => {
    const scheduler = new Scheduler({ rateLimits: { m: { requestsPerMinute: 120 } } })
    const { granted } = askAll(scheduler, 120)
    await vi.advanceTimersByTimeAsync(0)
    expect(granted.map((g) => g.at)).toEqual([0, 0])
    await vi.advanceTimersByTimeAsync(60_000)
    expect(granted).toHaveLength(120)
    expect(granted.map((g) => g.at)).toEqual([0, ...Array.from({ length: 119 }, (_, i) => 500 * i)])
    // First come, first served.
    expect(granted.map((g) => g.index)).toEqual(Array.from({ length: 120 }, (_, i) => i))
  })

  test('tokensPerMinute 1,500: calls of 1,000 tokens start as the bucket refills, and a settled refund lets the next one in early', async () => {
    const scheduler = new Scheduler({ rateLimits: { m: { tokensPerMinute: 1500 } } })
    const { granted } = askAll(scheduler, 4, { estimatedTokens: 1000 })
    await vi.advanceTimersByTimeAsync(0)
    expect(granted.map((g) => g.at)).toEqual([0])
    granted[0]!.slot.release(1000)
    // 500 tokens left; 25 a second refill the other 500 in 20 s.
    await vi.advanceTimersByTimeAsync(19_900)
    expect(granted).toHaveLength(1)
    await vi.advanceTimersByTimeAsync(100)
    expect(granted.map((g) => g.at)).toEqual([0, 20_000])
    // The second call used 200 of its 1,000: 800 come back at once, so the third needs only
    // 200 more, 8 s away, not the 40 s a full 1,000 would take.
    granted[1]!.slot.release(200)
    await vi.advanceTimersByTimeAsync(7_900)
    expect(granted).toHaveLength(2)
    await vi.advanceTimersByTimeAsync(100)
    expect(granted.map((g) => g.at)).toEqual([0, 20_000, 28_000])
  })

  test('before a call of its kind has ended, a metered call size is unknown: calls of that kind start one at a time', async () => {
    const scheduler = new Scheduler({ rateLimits: { m: { tokensPerMinute: 6000 } } })
    const { granted } = askAll(scheduler, 3, { estimatedTokens: 10, kind: 'writer' })
    await vi.advanceTimersByTimeAsync(0)
    expect(granted).toHaveLength(1)
    // It used 2,000: the next calls reserve 2,000 each, not their estimate of 10.
    granted[0]!.slot.release(2000)
    await vi.advanceTimersByTimeAsync(0)
    expect(granted).toHaveLength(3)
    // 6,000 - 2,000 - 2 × 2,000 = 0 left: a reader of unknown size reserves its estimate, 10, and waits for it.
    let reader: Slot | undefined
    void scheduler.acquire(request('m', { estimatedTokens: 10, kind: 'reader' })).then((slot) => {
      reader = slot
    })
    await vi.advanceTimersByTimeAsync(99)
    expect(reader).toBeUndefined()
    await vi.advanceTimersByTimeAsync(1)
    expect(reader).toBeDefined()
  })

  test('a run budget: calls reserve before they start, wait for the calls in flight, and fail when nothing can make room', async () => {
    const budget = new TokenBudget(5000, 'run r1')
    const scheduler = new Scheduler()
    const first = await scheduler.acquire(request('m', { estimatedTokens: 100, kind: 'w', budget }))
    first.release(1500)
    const { granted, pending } = askAll(scheduler, 4, { estimatedTokens: 100, kind: 'w', budget })
    await vi.advanceTimersByTimeAsync(0)
    // 1,500 used, 2 × 1,500 reserved: the next 1,500 would pass 5,000.
    expect(granted).toHaveLength(2)
    expect(budget).toMatchObject({ used: 1500, reserved: 3000 })
    granted[0]!.slot.release(1000)
    granted[1]!.slot.release(1000)
    await vi.advanceTimersByTimeAsync(0)
    // 3,500 used; the average is now 1,333: one more fits, the last does not and nothing is in flight to wait for.
    expect(granted).toHaveLength(3)
    granted[2]!.slot.release(1400)
    const last = await Promise.allSettled(pending)
    expect(last[3]).toMatchObject({
      status: 'rejected',
      reason: { code: 'LIMIT_EXCEEDED', limit: 'maxRunTokens' },
    })
    expect(budget).toMatchObject({ used: 4900, reserved: 0 })
  })
})

describe('shared limits', () => {
  /** A store shared by "workers": grants while it has places, remembers what was asked and settled. */
  const sharedStore = (places: number) => {
    const calls: SharedCall[] = []
    const ended: number[] = []
    let inFlight = 0
    const shared: SharedLimits = {
      async tryStart(call) {
        calls.push(call)
        if (inFlight >= places) return { started: false, retryInMs: 5 }
        inFlight++
        return {
          started: true,
          end: (tokens) => {
            inFlight--
            ended.push(tokens)
          },
        }
      },
    }
    return { shared, calls, ended }
  }

  test('with a shared store, limited calls ask it (with their reservation and limits) and wait while it says no', async () => {
    const rate: RateLimit = { tokensPerMinute: 1_000_000 }
    const scheduler = new Scheduler({ maxConcurrentModelCalls: 5, rateLimits: { m: rate } })
    const { shared, calls, ended } = sharedStore(1)
    const detach = scheduler.share(shared)
    // Its kind's average (50) is more than its estimate (40): the store is asked for 50.
    ;(await scheduler.acquire(request('m', { estimatedTokens: 40 }))).release(50)
    const first = await scheduler.acquire(request('m', { estimatedTokens: 40 }))
    expect(calls[1]).toEqual({ model: 'm', tokens: 50, rate, maxConcurrent: 5 })
    const second = scheduler.acquire(request('m', { estimatedTokens: 40 }))
    await new Promise((resolve) => setTimeout(resolve, 30))
    expect(calls.length).toBeGreaterThan(3)
    expect(scheduler.stats()).toMatchObject({ inFlight: 1, queued: 1 })
    first.release(30)
    ;(await second).release(20)
    expect(ended).toEqual([50, 30, 20])
    // Detached: this process counts alone again, and asks no one.
    detach()
    const asked = calls.length
    ;(await scheduler.acquire(request('m', { estimatedTokens: 40 }))).release(10)
    expect(calls).toHaveLength(asked)
  })

  test("with a shared store, a run's budget is counted there: a call it refuses fails with maxRunTokens and the store's count", async () => {
    const scheduler = new Scheduler()
    const asked: SharedCall[] = []
    scheduler.share({
      async tryStart(call) {
        asked.push(call)
        return { started: false, overBudget: { used: 950 } }
      },
    })
    const spent = async () => 0
    // This process has spent nothing of the budget: only the shared count can refuse the call.
    const budget = new TokenBudget(1000, 'run r1', { runId: 'r1', spent })
    await expect(scheduler.acquire(request('m', { estimatedTokens: 100, budget }))).rejects.toThrow(
      'run r1 has used 950 tokens; a model call expected to use 100 more would pass its budget of 1000 (maxRunTokens)',
    )
    expect(asked).toEqual([
      {
        model: 'm',
        tokens: 100,
        rate: undefined,
        maxConcurrent: undefined,
        budget: { runId: 'r1', max: 1000, spent },
      },
    ])
    expect(budget).toMatchObject({ used: 0, reserved: 0 })
    // A budget without a run to count it by stays this process's own: the store is not asked.
    ;(
      await scheduler.acquire(request('m', { estimatedTokens: 100, budget: new TokenBudget(1000, 'run r2') }))
    ).release(80)
    expect(asked).toHaveLength(1)
  })

  test('a call aborted while the shared store decides gives its place back', async () => {
    const scheduler = new Scheduler({ maxConcurrentModelCalls: 5 })
    const { shared, ended } = sharedStore(1)
    scheduler.share(shared)
    const cancelled = request('m')
    const waiting = scheduler.acquire(cancelled)
    cancelled.controller.abort(new Error('cancelled'))
    await expect(waiting).rejects.toThrow('cancelled')
    await new Promise((resolve) => setTimeout(resolve, 0))
    expect(ended).toEqual([0])
    ;(await scheduler.acquire(request('m'))).release(0)
    expect(ended).toEqual([0, 0])
  })
})

test('waiters that give up leave the queued count at once, and no timer is left for them', async () => {
  const scheduler = new Scheduler({ maxConcurrentModelCalls: 1 })
  const held = await scheduler.acquire(request('m'))
  const quitters = Array.from({ length: 5 }, () => request('m'))
  const waits = quitters.map((quitter) => scheduler.acquire(quitter).catch((error: unknown) => error))
  expect(scheduler.stats().queued).toBe(5)
  for (const quitter of quitters) quitter.controller.abort(new Error('gave up'))
  expect(scheduler.stats().queued).toBe(0)
  expect((await Promise.all(waits)).map((error) => (error as Error).message)).toEqual(
    Array(5).fill('gave up'),
  )
  held.release(0)

  // A rate limit makes a waiter wait on a timer; once it gives up, nothing keeps the process up.
  const limited = new Scheduler({ rateLimits: { slow: { requestsPerMinute: 1 } } })
  ;(await limited.acquire(request('slow'))).release(0)
  const timers = () => process.getActiveResourcesInfo().filter((kind) => kind === 'Timeout').length
  const before = timers()
  const late = request('slow')
  const wait = limited.acquire(late).catch(() => 'gave up')
  expect(timers()).toBe(before + 1)
  late.controller.abort()
  expect(await wait).toBe('gave up')
  expect(timers()).toBe(before)
})
