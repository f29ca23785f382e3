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
