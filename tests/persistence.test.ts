import { createRuntime, defineAgent, memoryStore, type RunStore, scriptedModel } from '@cohort/core'
import { expect, test } from 'vitest'

/** A memory store that counts writes per agent id. */
function countingStore(): { store: RunStore; writes: Map<string, number> } {
  const inner = memoryStore()
  const writes = new Map<string, number>()
  return {
    writes,
    store: {
      ...inner,
      saveAgent: async (runId, record) => {
        writes.set(record.id, (writes.get(record.id) ?? 0) + 1)
        await inner.saveAgent(runId, record)
      },
    },
  }
}

async function leadWritesWith(children: number) {
  const worker = defineAgent({ name: 'worker', instructions: '' })
  const lead = defineAgent({ name: 'lead', instructions: '', subagents: [worker] })
  const model = scriptedModel(
    {
      lead: [
        {
          action: 'launch_subagents',
          agents: Array.from({ length: children }, (_, i) => ({ agent: 'worker', task: `${i}` })),
        },
        { action: 'wait_for_subagents' },
        { action: 'finish', result: 'ok' },
      ],
      worker: (request) =>
        request.turn < 3
          ? { action: 'wait_for_subagents' }
          : { action: 'finish', result: request.agent.task },
    },
    { latencyMs: 1 },
  )
  const { store, writes } = countingStore()
  const runtime = createRuntime({
    agents: [lead, worker],
    model,
    store,
    limits: { maxChildrenPerLaunch: 100 },
  })
  await runtime.run('lead', 'go')
  return { lead: writes.get('lead') ?? 0, total: writes }
}

test('a step writes only the agent that changed: the lead is not rewritten as its 50 children work', async () => {
  const small = await leadWritesWith(2)
  const large = await leadWritesWith(50)
  // The lead has a handful of transitions of its own; its children's 4 turns each add none.
  expect(small.lead).toBeGreaterThan(0)
  expect(large.lead).toBeLessThanOrEqual(small.lead + 2)
  expect(large.lead).toBeLessThan(10)
  for (const [id, count] of large.total) if (id !== 'lead') expect(count).toBeLessThanOrEqual(10)
  expect(large.total.size).toBe(51)
})
