import { expect, test, vi } from 'vitest'
import { defineAgent } from '../agent/define-agent.js'
import { InvalidInputError } from '../errors.js'
import { scriptedModel } from '../models/scripted-model.js'
import { createRuntime } from '../runtime/runtime.js'
import { nextTurn } from '../thenable.js'
import { EventBus } from './event-bus.js'
import type { CohortEvent } from './types.js'

const detached: CohortEvent = { type: 'run.detached', runId: 'r', at: 0, elapsedMs: 0 }

test('run.events() yields every event from start to settlement, then ends', async () => {
  const solo = defineAgent({ name: 'solo', instructions: '' })
  const run = createRuntime({
    agents: [solo],
    model: scriptedModel({ solo: [{ action: 'finish', result: 7 }] }),
  }).start('solo', 'go')
  const types: string[] = []
  for await (const event of run.events()) types.push(event.type)
  expect(types).toEqual([
    'run.started',
    'agent.started',
    'model.started',
    'model.completed',
    'agent.completed',
    'run.completed',
  ])
  expect(await run.result).toBe(7)
})

test('run.events() taken at the start and read later still yields the events from the start', async () => {
  const solo = defineAgent({ name: 'solo', instructions: '' })
  const run = createRuntime({
    agents: [solo],
    model: scriptedModel({ solo: [{ action: 'finish', result: 7 }] }, { latencyMs: 20 }),
  }).start('solo', 'go')
  const events = run.events()
  await new Promise((resolve) => setTimeout(resolve, 40))
  const types: string[] = []
  for await (const event of events) types.push(event.type)
  expect(types[0]).toBe('run.started')
  expect(types.at(-1)).toBe('run.completed')
  expect(types).toHaveLength(6)
})

test('an unknown event type or a listener that is no function is refused at the call', async () => {
  const solo = defineAgent({ name: 'solo', instructions: '' })
  const runtime = createRuntime({
    agents: [solo],
    model: scriptedModel({ solo: [{ action: 'finish', result: 1 }] }),
  })
  const run = runtime.start('solo', 'go')
  // As from JavaScript, or with a type taken from a request.
  const targets = [runtime, run] as { on(type: unknown, listener: unknown): unknown }[]
  for (const target of targets) {
    expect(() => target.on('bogus', () => {})).toThrow(InvalidInputError)
    expect(() => target.on('bogus', () => {})).toThrow(
      /unknown event type "bogus": expected "event" \(every event\) or one of run\.started, .*tool\.failed$/,
    )
    expect(() => target.on('agent.completed', 42)).toThrow(
      /an event listener must be a function \(event\) => void, got number/,
    )
    expect(() => target.on('event', null)).toThrow(/an event listener must be a function .*, got null/)
  }
  const seen: string[] = []
  run.on('event', (event) => seen.push(event.type))
  run.on('agent.completed', (event) => seen.push(`${event.agentId} done`))
  expect(await run.result).toBe(1)
  expect(seen).toContain('run.completed')
  expect(seen).toContain('solo done')
})

test('a listener that throws is removed and the run goes on', async () => {
  const solo = defineAgent({ name: 'solo', instructions: '' })
  const run = createRuntime({
    agents: [solo],
    model: scriptedModel({ solo: [{ action: 'finish', result: 1 }] }),
  }).start('solo', 'go')
  run.on('event', () => {
    throw new Error('listener bug')
  })
  expect(await run.result).toBe(1)
})

test('an async listener that rejects is reported once and removed, and the run goes on', async () => {
  const warn = vi.spyOn(process, 'emitWarning').mockImplementation(() => {})
  try {
    const solo = defineAgent({ name: 'solo', instructions: '' })
    const runtime = createRuntime({
      agents: [solo],
      model: scriptedModel({ solo: [{ action: 'finish', result: 1 }] }),
    })
    runtime.on('run.completed', async () => {
      throw new Error('listener bug')
    })
    expect(await runtime.start('solo', 'go').result).toBe(1)
    await nextTurn()
    expect(warn).toHaveBeenCalledOnce()
    expect(String(warn.mock.calls[0]?.[0])).toContain('listener bug')
  } finally {
    warn.mockRestore()
  }
})

test('a listener that throws no Error is reported with what it threw, not [object Object]', () => {
  const warn = vi.spyOn(process, 'emitWarning').mockImplementation(() => {})
  try {
    const bus = new EventBus()
    bus.on('event', () => {
      throw { reason: 'quota', left: 0 }
    })
    bus.emit(detached)
    expect(String(warn.mock.calls[0]?.[0])).toBe(
      'cohort: an event listener threw and was removed: {"reason":"quota","left":0}',
    )
  } finally {
    warn.mockRestore()
  }
})

test('an async listener called again before its first rejection is seen is reported once', async () => {
  const warn = vi.spyOn(process, 'emitWarning').mockImplementation(() => {})
  try {
    const bus = new EventBus()
    let calls = 0
    bus.on('event', async () => {
      calls += 1
      throw new Error('listener bug')
    })
    bus.emit(detached)
    bus.emit(detached)
    await nextTurn()
    bus.emit(detached)
    expect(calls).toBe(2)
    expect(warn).toHaveBeenCalledOnce()
    expect(bus.hasListeners).toBe(false)
  } finally {
    warn.mockRestore()
  }
})

test('an events iterator closed before its first read unsubscribes at once', async () => {
  const bus = new EventBus()
  for (let i = 0; i < 1000; i += 1) {
    const events = bus.iterate()[Symbol.asyncIterator]()
    expect(await events.return?.()).toEqual({ done: true, value: undefined })
  }
  // Events would be built and buffered for 1000 iterators nobody reads.
  expect(bus.hasListeners).toBe(false)
})

test("an events iterator's return() ends a pending read and resolves without another event", async () => {
  const bus = new EventBus()
  const events = bus.iterate()[Symbol.asyncIterator]()
  const read = events.next()
  const returned = events.return?.().then(() => 'returned')
  expect(await Promise.race([returned, nextTurn().then(() => 'still waiting')])).toBe('returned')
  expect(await read).toEqual({ done: true, value: undefined })
  expect(bus.hasListeners).toBe(false)
})

test('an events iterator drains what it buffered after the close, then ends', async () => {
  const bus = new EventBus()
  const events = bus.iterate()
  bus.emit(detached)
  bus.close()
  expect(bus.hasListeners).toBe(false)
  const read: CohortEvent[] = []
  for await (const event of events) read.push(event)
  expect(read).toEqual([detached])
  for await (const event of bus.iterate()) read.push(event)
  expect(read).toHaveLength(1)
})
