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

test("an error whose message cannot be written (fetch's timeout, a DOMException; a frozen error) is the tool's or the model's failure as it says, never the agent's TypeError", async () => {
  // What `fetch(url, { signal: AbortSignal.timeout(ms) })` throws when it times out.
  const timedOut = () => new DOMException('The operation was aborted due to timeout', 'TimeoutError')
  const frozen = () => Object.freeze(new Error('frozen failure'))
  const fetchLike = defineTool({
    name: 'fetchLike',
    description: 'times out',
    parameters: z.object({ frozen: z.boolean(), secret: z.boolean().optional() }),
    execute: ({ frozen: isFrozen, secret }) =>
      Promise.reject(
        secret
          ? new DOMException('refused key sk-hidden-123', 'NotAllowedError')
          : isFrozen
            ? frozen()
            : timedOut(),
      ),
  })
  const seen: string[] = []
  const model = scriptedModel({
    worker: [
      { action: 'call_tool', tool: 'fetchLike', args: { frozen: false } },
      { action: 'call_tool', tool: 'fetchLike', args: { frozen: true } },
      { action: 'call_tool', tool: 'fetchLike', args: { frozen: false, secret: true } },
      (request) => {
        seen.push(...request.messages.map((message) => message.content))
        return { action: 'finish', result: 'ok' }
      },
    ],
  })
  const worker = defineAgent({ name: 'worker', instructions: '', tools: [fetchLike] })
  // With a secret to hide, so that the messages are redacted too.
  const runtime = createRuntime({ agents: [worker], model, secrets: ['sk-hidden-123'] })
  expect(await runtime.run('worker', 'go')).toBe('ok')
  expect(seen.join('\n')).toContain('error: The operation was aborted due to timeout')
  expect(seen.join('\n')).toContain('error: frozen failure')
  // Its message cannot be written: the secret is hidden in a copy of it.
  expect(seen.join('\n')).toContain('error: refused key [redacted]')
  expect(seen.join('\n')).not.toContain('sk-hidden-123')
  // A model adapter that times out the same way fails its agent with that message.
  const failing = createRuntime({
    agents: [worker],
    model: { name: 'timing-out', complete: () => Promise.reject(timedOut()) },
    secrets: ['sk-hidden-123'],
  })
  await expect(failing.run('worker', 'go')).rejects.toThrow(/The operation was aborted due to timeout/)
})
