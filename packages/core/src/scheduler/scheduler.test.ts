import { expect, test } from 'vitest'
import { Scheduler } from './scheduler.js'

const request = (model: string) => {
  const controller = new AbortController()
  return { priority: 0, model, signal: controller.signal, controller }
}

test('calls of models without a rate limit leave no per-call history behind (a server runs for months)', async () => {
  const scheduler = new Scheduler({ rateLimits: { limited: { requestsPerMinute: 10_000 } } })
  for (let i = 0; i < 1_000; i++) (await scheduler.acquire(request('free'))).release(50)
  for (let i = 0; i < 10; i++) (await scheduler.acquire(request('limited'))).release(50)
  const windows = (scheduler as unknown as { windows: Map<string, { starts: number[] }> }).windows
  expect([...windows.keys()]).toEqual(['limited'])
  expect(windows.get('limited')?.starts).toHaveLength(10)
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
