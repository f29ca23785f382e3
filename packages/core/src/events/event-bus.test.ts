import { expect, test, vi } from 'vitest'
import { defineAgent } from '../agent/define-agent.js'
import { scriptedModel } from '../models/scripted-model.js'
import { createRuntime } from '../runtime/runtime.js'
import { nextTurn } from '../thenable.js'
import { EventBus } from './event-bus.js'
import type { CohortEvent } from './types.js'

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

test('an async listener called again before its first rejection is seen is reported once', async () => {
  const warn = vi.spyOn(process, 'emitWarning').mockImplementation(() => {})
  try {
    const bus = new EventBus()
    let calls = 0
    bus.on('event', async () => {
      calls += 1
      throw new Error('listener bug')
    })
    const event: CohortEvent = { type: 'run.detached', runId: 'r', at: 0, elapsedMs: 0 }
    bus.emit(event)
    bus.emit(event)
    await nextTurn()
    bus.emit(event)
    expect(calls).toBe(2)
    expect(warn).toHaveBeenCalledOnce()
    expect(bus.hasListeners).toBe(false)
  } finally {
    warn.mockRestore()
  }
})
