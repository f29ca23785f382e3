import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { createRuntime, defaultMemoryRetention, defineAgent, scriptedModel } from '@cohort/core'
import { expect, test } from 'vitest'
import { fanOutLead } from './support/scripts.js'

// In a file of its own: vitest runs each file in its own process, so the heap measured here holds
// only what this test made.

const worker = defineAgent({ name: 'worker', instructions: '' })
const lead = defineAgent({ name: 'lead', instructions: '', subagents: [worker] })

test('a long-running process does not grow without bound on the default store: 10,000 runs, heap flat within 20% after the first 1,000', async () => {
  setFlagsFromString('--expose-gc')
  const gc = runInNewContext('gc') as () => void
  const heapAfterGc = async () => {
    // A few turns of the event loop first: a run's end leaves work for the next ones.
    for (let i = 0; i < 3; i++) {
      await new Promise((resolve) => setTimeout(resolve, 0))
      gc()
    }
    return process.memoryUsage().heapUsed
  }
  const model = scriptedModel({
    lead: fanOutLead(['a', 'b'], 'done'),
    worker: [{ action: 'finish', result: 'ok' }],
  })
  // The default store: what a user who passes none gets.
  const runtime = createRuntime({ agents: [lead, worker], model })
  const samples: number[] = []
  for (let started = 0; started < 10_000; started += 200) {
    const results = await Promise.all(Array.from({ length: 200 }, () => runtime.run('lead', 'go')))
    expect(results.every((result) => result === 'done')).toBe(true)
    if ((started + 200) % 1_000 === 0) samples.push(await heapAfterGc())
  }
  const [first, ...later] = samples
  const mb = (bytes: number) => (bytes / 1e6).toFixed(1)
  console.log(`heap after each 1,000 runs (MB): ${samples.map(mb).join(', ')}`)
  for (const heap of later)
    expect(heap, `heap ${mb(heap)} MB against ${mb(first!)} MB`).toBeLessThan(first! * 1.2)
  expect(await runtime.store.listRuns()).toHaveLength(defaultMemoryRetention.maxFinishedRuns)
}, 300_000)
