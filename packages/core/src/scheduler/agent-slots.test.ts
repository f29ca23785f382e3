import { expect, test } from 'vitest'
import { AgentSlots } from './agent-slots.js'

/** Work that ends when told, recording when it started. */
function gate(name: string, started: string[]) {
  let open: () => void = () => {}
  const done = new Promise<void>((resolve) => {
    open = resolve
  })
  return {
    work: () => {
      started.push(name)
      return done.then(() => name)
    },
    open: () => open(),
  }
}

test('at most `limit` at work; the queue goes by priority, then first come; an abort leaves it and frees nothing', async () => {
  const slots = new AgentSlots(1)
  const started: string[] = []
  const first = gate('first', started)
  const low = gate('low', started)
  const high = gate('high', started)
  const gone = gate('gone', started)
  const signal = new AbortController().signal
  const leaving = new AbortController()

  const running = slots.run(0, signal, first.work)
  const lowDone = slots.run(0, signal, low.work)
  const goneDone = slots.run(5, leaving.signal, gone.work)
  const highDone = slots.run(1, signal, high.work)
  expect(started).toEqual(['first'])
  expect(slots.stats).toEqual({ working: 1, queued: 3 })

  leaving.abort(new Error('left'))
  await expect(goneDone).rejects.toThrow('left')
  first.open()
  await running
  await Promise.resolve()
  expect(started).toEqual(['first', 'high'])
  high.open()
  low.open()
  expect(await highDone).toBe('high')
  expect(await lowDone).toBe('low')
  expect(started).toEqual(['first', 'high', 'low'])
  expect(slots.stats).toEqual({ working: 0, queued: 0 })
})

test('work that throws or rejects frees its place', async () => {
  const slots = new AgentSlots(1)
  const signal = new AbortController().signal
  await expect(
    slots.run(0, signal, () => {
      throw new Error('at once')
    }),
  ).rejects.toThrow('at once')
  await expect(slots.run(0, signal, () => Promise.reject(new Error('later')))).rejects.toThrow('later')
  expect(await slots.run(0, signal, async () => 'still free')).toBe('still free')
})

test('a place is freed when its agent stops, though its work ignores the abort and never settles', async () => {
  const slots = new AgentSlots(1)
  const stopped = new AbortController()
  void slots.run(0, stopped.signal, () => new Promise<never>(() => {}))
  const next = slots.run(0, new AbortController().signal, async () => 'went on')
  expect(slots.stats).toEqual({ working: 1, queued: 1 })
  stopped.abort(new Error('timed out'))
  expect(await next).toBe('went on')
})
