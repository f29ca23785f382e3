import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { createRuntime, defineAgent, memoryStore, scriptedModel } from '@cohort/core'
import { expect, test } from 'vitest'
import { fanOutLead } from './support/scripts.js'

// In a file of its own: vitest runs each file in its own process, so no timer of another test
// (a run still winding down) can come or go while this one counts.

const worker = defineAgent({ name: 'worker', instructions: '' })
const lead = defineAgent({ name: 'lead', instructions: '', subagents: [worker] })

test('a finished run leaves no timer that holds the process open', async () => {
  // The writer's watchdog (a store write that hangs fails the run) must not keep a CLI or a
  // script alive once nothing is being written.
  const timers = () => process.getActiveResourcesInfo().filter((kind) => kind === 'Timeout').length
  const before = timers()
  const model = scriptedModel({ worker: [{ action: 'finish', result: 'ok' }] })
  const runtime = createRuntime({ agents: [worker], model, store: memoryStore() })
  expect(await runtime.run('worker', 'go')).toBe('ok')
  await new Promise((resolve) => setImmediate(resolve))
  expect(timers()).toBe(before)
})

test('a finished run is not held in memory once its caller lets go of it', async () => {
  // A server runs many runs: one that ended must be garbage, its store and agents with it (a
  // pending watchdog timer held each finished run for 7.5 s).
  setFlagsFromString('--expose-gc')
  const gc = runInNewContext('gc') as () => void
  const finished = async () => {
    const store = memoryStore()
    const model = scriptedModel({
      lead: fanOutLead(['a', 'b'], 'done'),
      worker: [{ action: 'finish', result: 'ok' }],
    })
    const runtime = createRuntime({ agents: [lead, worker], model, store })
    expect(await runtime.run('lead', 'go')).toBe('done')
    return new WeakRef(store)
  }
  const store = await finished()
  // A WeakRef is cleared by a collection after the job that last read it. One collection right
  // after the run sometimes finds the store still reachable from work the run's end left for
  // the next turns of the event loop; it must be gone well within the 7.5 s that timer held it.
  let collections = 0
  while (collections < 20) {
    await new Promise((resolve) => setTimeout(resolve, 10))
    gc()
    collections++
    await new Promise((resolve) => setTimeout(resolve, 0))
    if (store.deref() === undefined) break
  }
  if (collections > 1 && store.deref() === undefined)
    console.log(`the finished run was collected after ${collections} collections`)
  expect(store.deref()).toBeUndefined()
})
