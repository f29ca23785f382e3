import { expect, test } from 'vitest'
import { AgentWriter } from './agent-writer.js'
import { memoryStore } from './memory-store.js'
import type { AgentRecord, RunStore } from './records.js'

function recordOf(id: string): AgentRecord {
  return { id } as unknown as AgentRecord
}

test('a long queue of writes lets timers that came due meanwhile (model replies) run before its rest', async () => {
  const started: string[] = []
  const store: RunStore = {
    ...memoryStore(),
    async saveAgent(_runId, record) {
      started.push(record.id)
      // An encode that takes a while: the first writes outlast a timer's delay.
      const until = performance.now() + 0.2
      while (performance.now() < until) {}
    },
  }
  const writer = new AgentWriter<{ id: string }>(
    store,
    'r1',
    10_000,
    (error) => {
      throw error
    },
    (agent) => recordOf(agent.id),
  )
  let seenByTimer = -1
  setTimeout(() => {
    seenByTimer = started.length
  }, 1)
  const ids = Array.from({ length: 64 }, (_, index) => `a${index}`)
  for (const id of ids) writer.schedule({ id })
  await writer.written(ids.at(-1)!)
  await writer.flush()
  expect(started).toEqual(ids)
  // The timer ran before the last of them started, not after the whole queue.
  expect(seenByTimer).toBeGreaterThanOrEqual(0)
  expect(seenByTimer).toBeLessThan(ids.length)
})
