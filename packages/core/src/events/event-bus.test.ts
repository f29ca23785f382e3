import { expect, test } from 'vitest'
import { defineAgent } from '../agent/define-agent.js'
import { scriptedModel } from '../models/scripted-model.js'
import { createRuntime } from '../runtime/runtime.js'

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
