import { createRuntime, InvalidInputError, memoryStore, type RunStore } from '@cohort/core'
import { expect, test } from 'vitest'
import { faultAgents, faultModel } from './fixtures/fault-scenario.js'

/** A store that says when each write batch lands, and what the runtime did before it. */
function watchedStore(log: string[]): RunStore {
  const inner = memoryStore()
  return {
    ...inner,
    async saveAgent(runId, record) {
      log.push(`stored ${record.id} ${JSON.stringify(record.snapshot.value)}`)
      await inner.saveAgent(runId, record)
    },
  }
}

test.each(['sync', 'async'] as const)(
  "durability '%s': a run with fan-out, recursion, tools and a dependency ends as it always does, and resumes",
  async (durability) => {
    const store = memoryStore()
    const runtime = createRuntime({ agents: faultAgents, model: faultModel, store, durability })
    const result = await runtime.run('lead', 'go', { runId: `d-${durability}` })
    expect(result).toMatchObject({ w1: 'lead.w1 slept 0.05', w2: 'lead.w2 slept 0.08' })
    const stored = await store.loadRun(`d-${durability}`)
    expect(stored?.agents.every((agent) => agent.status === 'completed')).toBe(true)
    // A finished run resumed is the same finished run.
    const again = await createRuntime({ agents: faultAgents, model: faultModel, store, durability }).resume(
      `d-${durability}`,
    )
    expect(await again.result).toEqual(result)
  },
  30_000,
)

test("under 'sync' a model call starts only once the step that leads to it is stored", async () => {
  const log: string[] = []
  const runtime = createRuntime({ agents: faultAgents, model: faultModel, store: watchedStore(log) })
  const run = runtime.start('lead', 'go')
  run.on('model.started', (event) => log.push(`model ${event.agentId} ${event.turn}`))
  run.on('tool.started', (event) => log.push(`tool ${event.agentId}`))
  await run.result
  // Each effect comes after the write of the state that calls for it.
  for (const [index, line] of log.entries()) {
    const model = /^model (\S+) \d+$/.exec(line)
    const tool = /^tool (\S+)$/.exec(line)
    const agent = model?.[1] ?? tool?.[1]
    if (!agent) continue
    const state = model ? '{"running":"thinking"}' : '{"running":"acting"}'
    const stored = log.slice(0, index).lastIndexOf(`stored ${agent} ${state}`)
    expect(stored, `${line} before its state was stored`).toBeGreaterThanOrEqual(0)
  }
})

test("under 'sync' an agent's completion is told once its record says so: a crash cannot take back a result a listener saw", async () => {
  const inner = memoryStore()
  const storedStatus = new Map<string, string>()
  const store: RunStore = {
    ...inner,
    async saveAgent(runId, record, storedMessages) {
      await inner.saveAgent(runId, record, storedMessages)
      storedStatus.set(record.id, record.status)
    },
  }
  const run = createRuntime({ agents: faultAgents, model: faultModel, store }).start('lead', 'go')
  const told: string[] = []
  run.on('agent.completed', (event) => told.push(`${event.agentId} ${storedStatus.get(event.agentId)}`))
  await run.result
  expect(told.length).toBeGreaterThan(3)
  for (const line of told) expect(line).toMatch(/ completed$/)
})

test('a durability that is neither sync nor async is refused with what is expected', () => {
  expect(() =>
    createRuntime({ agents: faultAgents, model: faultModel, durability: 'later' as unknown as 'sync' }),
  ).toThrow(InvalidInputError)
  expect(() =>
    createRuntime({ agents: faultAgents, model: faultModel, durability: 'later' as unknown as 'sync' }),
  ).toThrow(/createRuntime: durability: Invalid option: expected one of "sync"|"async"/)
})
