// Token limits hold before a call starts, not after it ended (issue 23, item 6): a call's tokens
// are reserved (an estimate) when it starts and settled with its real usage when it ends.
import { createRuntime, defineAgent, type ModelReply, scriptedModel } from '@cohort/core'
import { expect, test } from 'vitest'

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

test('token limits are checked after the fact: four calls of 1,000 tokens at once under tokensPerMinute 1,500 do not all start', async () => {
  const starts: number[] = []
  const model = scriptedModel(
    (request): ModelReply => {
      if (request.agent.name !== 'cohort-plan') starts.push(performance.now())
      return { text: '{"action":"finish","result":1}', usage: { promptTokens: 900, completionTokens: 100 } }
    },
    { latencyMs: 20 },
  )
  const quick = defineAgent({ name: 'quick', instructions: '', model: { ...model, name: 'limited' } })
  const runtime = createRuntime({
    agents: [quick],
    model,
    scheduler: { rateLimits: { limited: { tokensPerMinute: 1500 } } },
  })
  const run = runtime.runPlan({
    agents: [0, 1, 2, 3].map((i) => ({ id: `q${i}`, agent: 'quick', task: 't' })),
  })
  // 1,000 tokens pass; 500 are left, and the next 1,000 refill at 25 a second: 20 s away.
  await pause(400)
  expect(starts).toHaveLength(1)
  expect(runtime.metrics().modelCalls.queued).toBe(3)
  await run.cancel()
})

test('maxRunTokens is checked after the fact: five parallel calls of 1,500 tokens under a budget of 5,000 spend at most 5,000', async () => {
  // What the provider bills: every call the model answered, whether or not its agent went on.
  let spent = 0
  const reply = (text: string, tokens: number) => (): ModelReply => {
    spent += tokens
    return { text, usage: { promptTokens: tokens - 100, completionTokens: 100 } }
  }
  const model = scriptedModel(
    {
      lead: [
        reply(
          JSON.stringify({
            action: 'launch_subagents',
            agents: [1, 2, 3, 4, 5].map((i) => ({ agent: 'writer', task: 'write', id: `w${i}` })),
          }),
          100,
        ),
        reply('{"action":"wait_for_subagents"}', 100),
        reply('{"action":"finish","result":"done"}', 100),
      ],
      writer: [reply('{"action":"finish","result":"text"}', 1500)],
    },
    { latencyMs: 10 },
  )
  const writer = defineAgent({ name: 'writer', instructions: 'Write.' })
  const lead = defineAgent({ name: 'lead', instructions: 'Delegate.', subagents: [writer] })
  const runtime = createRuntime({ agents: [lead, writer], model, limits: { maxRunTokens: 5000 } })
  const run = runtime.start('lead', 'go')
  await run.result.catch(() => {})
  expect(spent).toBeLessThanOrEqual(5000)
  // The writers that did not fit failed with the budget named, and never called their model.
  const stored = await runtime.store.loadRun(run.id)
  const failed = stored!.agents.filter((agent) => agent.status === 'failed')
  expect(failed.length).toBeGreaterThan(0)
  for (const agent of failed) expect(agent.snapshot.context.error?.message).toMatch(/maxRunTokens/)
  expect(run.metrics().tokens.total).toBe(spent)
})

test('requestsPerMinute lets every call start in the same millisecond: calls are spread', async () => {
  const starts: number[] = []
  const model = scriptedModel((request) => {
    if (request.agent.name !== 'cohort-plan') starts.push(performance.now())
    return { action: 'finish', result: 1 }
  })
  const quick = defineAgent({ name: 'quick', instructions: '', model: { ...model, name: 'limited' } })
  const runtime = createRuntime({
    agents: [quick],
    model,
    scheduler: { rateLimits: { limited: { requestsPerMinute: 60 } } },
  })
  const run = runtime.runPlan({
    agents: Array.from({ length: 10 }, (_, i) => ({ id: `q${i}`, agent: 'quick', task: 't' })),
  })
  // 60 a minute is one a second: one call now, the next a second later.
  await pause(250)
  expect(starts).toHaveLength(1)
  expect(runtime.metrics().modelCalls.queued).toBe(9)
  await run.cancel()
})
