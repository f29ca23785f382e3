import { createRuntime, defineAgent, defineTool, scriptedModel } from '@cohort/core'
import { expect, test } from 'vitest'
import { z } from 'zod'

test('a tool result that is not plain JSON reaches the model readably, never [object Object]', async () => {
  const big = defineTool({
    name: 'big',
    description: 'returns values JSON cannot hold',
    parameters: z.object({}),
    execute: () => ({
      n: 10n,
      m: new Map([['a', 1]]),
      s: new Set(['x', 'y']),
      when: new Date(Date.UTC(2024, 0, 2)),
      error: new Error('boom'),
    }),
  })
  const seen: string[] = []
  const model = scriptedModel({
    worker: [
      { action: 'call_tool', tool: 'big', args: {} },
      (request) => {
        seen.push(request.messages.at(-1)!.content)
        return { action: 'finish', result: 'ok' }
      },
    ],
  })
  const worker = defineAgent({ name: 'worker', instructions: '', tools: [big] })
  expect(await createRuntime({ agents: [worker], model }).run('worker', 'go')).toBe('ok')
  // superjson's JSON: BigInt as its digits, a Map as its entries, a Set as its items, an Error as name and message.
  expect(seen[0]).toBe(
    '[call_tool big] {"n":"10","m":[["a",1]],"s":["x","y"],"when":"2024-01-02T00:00:00.000Z","error":{"name":"Error","message":"boom"}}',
  )
})

test("a child's result that is not plain JSON reaches its parent and its dependents readably, and the run goes on", async () => {
  const rich = { n: 10n, m: new Map([['a', 1]]), s: new Set(['x']) }
  const slow = defineTool({
    name: 'slow',
    description: 'never returns in time',
    parameters: z.object({}),
    execute: (_args, ctx) => ctx.sleep(5_000),
  })
  const worker = defineAgent({ name: 'worker', instructions: '', tools: [slow], fallback: rich })
  const reader = defineAgent({ name: 'reader', instructions: '' })
  const lead = defineAgent({ name: 'lead', instructions: '', subagents: ['worker', 'reader'] })
  const seen: Record<string, string> = {}
  const model = scriptedModel({
    lead: [
      {
        action: 'launch_subagents',
        agents: [
          { agent: 'worker', task: 'go', id: 'w', timeout_ms: 50 },
          { agent: 'reader', task: 'read', id: 'r', depends_on: ['w'] },
        ],
      },
      { action: 'wait_for_subagents', ids: ['w'] },
      (request) => {
        seen.lead = request.messages.at(-1)!.content
        return { action: 'wait_for_subagents', ids: ['r'] }
      },
      { action: 'finish', result: 'done' },
    ],
    worker: [{ action: 'call_tool', tool: 'slow', args: {} }],
    reader: (request) => {
      seen.reader = request.messages.map((message) => message.content).join('\n')
      return { action: 'finish', result: 'read' }
    },
  })
  expect(await createRuntime({ agents: [lead, worker, reader], model }).run('lead', 'go')).toBe('done')
  // Keys sorted, as results read back from any store are shown.
  expect(seen.lead).toContain('"result":{"m":[["a",1]],"n":"10","s":["x"]}')
  expect(seen.reader).toContain(
    'Results of the agents you depend on: [{"id":"w","agent":"worker","status":"completed","result":{"m":[["a",1]],"n":"10"',
  )
})

test('runPlan refuses a fallback JSON cannot hold, naming the step, instead of a TypeError or a value lost', () => {
  const worker = defineAgent({ name: 'worker', instructions: '' })
  const runtime = createRuntime({
    agents: [worker],
    model: scriptedModel({ worker: [{ action: 'finish', result: 1 }] }),
  })
  for (const fallback of [5n, new Map([['k', 1]]), { at: new Date(0) }]) {
    expect(() => runtime.runPlan({ agents: [{ id: 's', agent: 'worker', task: 'go', fallback }] })).toThrow(
      /invalid plan: agents\.0\.fallback: expected a JSON value/,
    )
  }
})

test('a tool result whose `then` getter throws is the tool failing, told to the model; the run goes on', async () => {
  const odd = defineTool({
    name: 'odd',
    description: 'returns a value that breaks when asked for then',
    parameters: z.object({}),
    execute: () => ({
      // biome-ignore lint/suspicious/noThenProperty: the test is of a value whose then getter throws
      get then(): never {
        throw new Error('no then here')
      },
    }),
  })
  const seen: string[] = []
  const model = scriptedModel({
    worker: [
      { action: 'call_tool', tool: 'odd', args: {} },
      (request) => {
        seen.push(request.messages.at(-1)!.content)
        return { action: 'finish', result: 'ok' }
      },
    ],
  })
  const worker = defineAgent({ name: 'worker', instructions: '', tools: [odd] })
  expect(await createRuntime({ agents: [worker], model }).run('worker', 'go')).toBe('ok')
  expect(seen[0]).toBe('[call_tool odd] error: no then here')
})

test('a tool that throws a plain object shows the model its JSON, bounded, never [object Object]', async () => {
  const thrower = defineTool({
    name: 'thrower',
    description: 'throws what it is given',
    parameters: z.object({ size: z.number() }),
    execute: ({ size }) => {
      throw size === 0 ? { code: 42, reason: 'x' } : { text: 'y'.repeat(size) }
    },
  })
  const seen: string[] = []
  const model = scriptedModel({
    worker: [
      { action: 'call_tool', tool: 'thrower', args: { size: 0 } },
      (request) => {
        seen.push(request.messages.at(-1)!.content)
        return { action: 'call_tool', tool: 'thrower', args: { size: 30_000 } }
      },
      (request) => {
        seen.push(request.messages.at(-1)!.content)
        return { action: 'finish', result: 'ok' }
      },
    ],
  })
  const worker = defineAgent({ name: 'worker', instructions: '', tools: [thrower] })
  expect(await createRuntime({ agents: [worker], model }).run('worker', 'go')).toBe('ok')
  expect(seen[0]).toBe('[call_tool thrower] error: {"code":42,"reason":"x"}')
  expect(seen[1]).toMatch(/^\[call_tool thrower\] error: \{"text":"y+… \(\d+ more characters\)$/)
  expect(seen[1]!.length).toBeLessThan(20_100)
})
