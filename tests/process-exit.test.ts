import { createRuntime, defineAgent, memoryStore, scriptedModel } from '@cohort/core'
import { expect, test } from 'vitest'

// In a file of its own: vitest runs each file in its own process, so no timer of another test
// (a run still winding down) can come or go while this one counts.
test('a finished run leaves no timer that holds the process open', async () => {
  // The writer's watchdog (a store write that hangs fails the run) must not keep a CLI or a
  // script alive once nothing is being written.
  const timers = () => process.getActiveResourcesInfo().filter((kind) => kind === 'Timeout').length
  const before = timers()
  const worker = defineAgent({ name: 'worker', instructions: '' })
  const model = scriptedModel({ worker: [{ action: 'finish', result: 'ok' }] })
  const runtime = createRuntime({ agents: [worker], model, store: memoryStore() })
  expect(await runtime.run('worker', 'go')).toBe('ok')
  await new Promise((resolve) => setImmediate(resolve))
  expect(timers()).toBe(before)
})
