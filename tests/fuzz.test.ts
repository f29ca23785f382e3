import {
  CohortError,
  createRuntime,
  defineAgent,
  defineTool,
  type ModelReply,
  memoryStore,
  parseActions,
  scriptedModel,
} from '@cohort/core'
import fc from 'fast-check'
import { describe, expect, test } from 'vitest'
import { z } from 'zod'

/** Generated cases: thousands in `pnpm test:faults`, fewer in the default suite. */
const runs = Number(process.env.COHORT_FUZZ_RUNS ?? 300)

const echo = defineTool({
  name: 'echo',
  description: 'Echo a word.',
  parameters: z.object({ word: z.string().max(100) }),
  execute: ({ word }) => word,
})

const context = { tools: new Map([['echo', echo]]), subagents: ['worker'], childIds: new Set(['a', 'b']) }

/** Replies models really send, and hostile ones. */
const action = fc.oneof(
  fc.record({ action: fc.constantFrom('finish'), result: fc.jsonValue() }),
  fc.record({
    action: fc.constant('launch_subagents'),
    agents: fc.array(
      fc.record(
        {
          agent: fc.oneof(fc.constant('worker'), fc.string()),
          task: fc.oneof(fc.string(), fc.integer()),
          id: fc.oneof(fc.constantFrom('a', 'x', 'self', '../up'), fc.string()),
          depends_on: fc.array(fc.oneof(fc.constantFrom('x', 'self', 'a'), fc.string()), { maxLength: 4 }),
        },
        { requiredKeys: ['agent', 'task'] },
      ),
      { maxLength: 40 },
    ),
  }),
  fc.record({
    action: fc.constant('wait_for_subagents'),
    ids: fc.oneof(fc.array(fc.string()), fc.anything()),
  }),
  fc.record({
    action: fc.constant('call_tool'),
    tool: fc.constantFrom('echo', 'rm', ''),
    args: fc.anything(),
  }),
  fc.record({ action: fc.constant('send_message'), to: fc.anything(), text: fc.anything() }),
  fc.record({ action: fc.string(), extra: fc.anything() }),
)

const deep = fc.integer({ min: 50, max: 20_000 }).map((n) => `${'['.repeat(n)}${']'.repeat(n)}`)
const truncated = fc
  .tuple(fc.array(action, { minLength: 1, maxLength: 3 }), fc.double({ min: 0, max: 1, noNaN: true }))
  .map(([actions, cut]) => {
    const text = JSON.stringify(actions)
    return text.slice(0, Math.floor(text.length * cut))
  })
const replyText = fc.oneof(
  fc.string(),
  fc.string({ unit: 'binary' }),
  action.map((a) => JSON.stringify(a)),
  fc.array(action, { maxLength: 5 }).map((a) => `Here you go:\n\`\`\`json\n${JSON.stringify(a)}\n\`\`\``),
  truncated,
  deep,
  fc.jsonValue().map((v) => JSON.stringify(v)),
  fc
    .array(fc.constant({ action: 'finish', result: 1 }), { minLength: 90, maxLength: 200 })
    .map((a) => JSON.stringify(a)),
)
const reply: fc.Arbitrary<ModelReply> = fc.oneof(
  replyText.map((text) => ({ text })),
  fc
    .array(
      fc.record({
        id: fc.string({ minLength: 1, maxLength: 8 }),
        name: fc.constantFrom(
          'launch_subagents',
          'wait_for_subagents',
          'finish',
          'echo',
          'nope',
          'send_message',
        ),
        arguments: fc.oneof(fc.string(), replyText),
      }),
      { maxLength: 4 },
    )
    .map((toolCalls) => ({ toolCalls })),
)

describe('model output fuzzing', () => {
  test('the parser never throws: every reply is actions or one exact error', () => {
    fc.assert(
      fc.property(reply, (generated) => {
        const result = parseActions(generated, context)
        if (result.ok) expect(result.actions.length).toBeGreaterThan(0)
        else expect(result.error.length).toBeGreaterThan(5)
      }),
      { numRuns: runs * 10 },
    )
  })

  test('a run on generated replies always settles: a result, or a clear failure, never a crash', async () => {
    const worker = defineAgent({ name: 'worker', instructions: '', tools: [echo], subagents: ['worker'] })
    await fc.assert(
      fc.asyncProperty(fc.array(reply, { minLength: 1, maxLength: 6 }), async (replies) => {
        const model = scriptedModel((request) => replies[request.turn % replies.length]!)
        const store = memoryStore()
        const runtime = createRuntime({
          agents: [worker],
          model,
          store,
          limits: { maxSteps: 6, maxAgents: 12, maxDepth: 2, maxChildrenPerLaunch: 4, maxRepairs: 2 },
        })
        const run = runtime.start('worker', 'fuzz')
        const outcome = await run.result.then(
          () => 'completed',
          (error: unknown) => {
            expect(error).toBeInstanceOf(CohortError)
            return 'failed'
          },
        )
        const stored = await store.loadRun(run.id)
        expect(stored?.run.status).toBe(outcome)
        expect(stored!.agents.length).toBeLessThanOrEqual(12)
        for (const agent of stored!.agents) expect(['completed', 'failed']).toContain(agent.status)
      }),
      { numRuns: Math.ceil(runs / 3) },
    )
  }, 120_000)
})
