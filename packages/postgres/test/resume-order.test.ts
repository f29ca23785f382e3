import { createRuntime, defineAgent, defineTool, type ModelRequest, scriptedModel } from '@cohort/core'
import { afterEach, describe, expect, test } from 'vitest'
import { z } from 'zod'
import { type PostgresStore, postgresStore } from '../src/index.js'
import { connectionString, dropSchema, enabled, freshSchema } from './pg-harness.js'

const suite = enabled ? describe : describe.skip

/**
 * jsonb keeps an object's keys in an order of its own: what a run reads back from PostgreSQL
 * after a resume must still give a tool its idempotency key, and a parent its prompt, as an
 * uninterrupted run does.
 */
suite('a run resumed from PostgreSQL, whose records jsonb holds with its own key order', () => {
  const schemas: string[] = []
  const stores: PostgresStore[] = []
  afterEach(async () => {
    await Promise.all(stores.splice(0).map((store) => store.close()))
    await Promise.all(schemas.splice(0).map(dropSchema))
  })

  function scenario(schema: string) {
    const store = postgresStore({ connectionString, schema })
    stores.push(store)
    const calls: { key: string; args: unknown }[] = []
    const prompts: string[] = []
    let release: () => void = () => {}
    const paid = new Promise<void>((resolve) => {
      release = resolve
    })
    const pay = defineTool({
      name: 'pay',
      description: 'pays',
      parameters: z.object({ zeta: z.number(), a: z.number() }),
      execute: async (args, ctx) => {
        calls.push({ key: ctx.idempotencyKey, args })
        await paid
        return 'paid'
      },
    })
    const worker = defineAgent({ name: 'worker', instructions: '', tools: [pay] })
    const lead = defineAgent({ name: 'lead', instructions: '', subagents: [worker] })
    const model = scriptedModel({
      lead: [
        { action: 'launch_subagents', agents: [{ agent: 'worker', task: 'pay', id: 'payer' }] },
        { action: 'wait_for_subagents' },
        (request: ModelRequest) => {
          prompts.push(request.messages.at(-1)!.content)
          return { action: 'finish', result: 'done' }
        },
      ],
      worker: [
        { action: 'call_tool', tool: 'pay', args: { zeta: 1, a: 2 } },
        { action: 'finish', result: { zeta: 1, a: 2, error: { message: 'none', code: 0 } } },
      ],
    })
    return { runtime: createRuntime({ agents: [lead, worker], model, store }), calls, prompts, release }
  }

  test('a tool call run again has the key it first had, and the parent reads the same results', async () => {
    const straightSchema = freshSchema()
    schemas.push(straightSchema)
    const straight = scenario(straightSchema)
    const run = straight.runtime.start('lead', 'go', { runId: 'straight' })
    straight.release()
    expect(await run.result).toBe('done')

    const schema = freshSchema()
    schemas.push(schema)
    const first = scenario(schema)
    const cut = first.runtime.start('lead', 'go', { runId: 'cut' })
    await new Promise<void>((resolve) => {
      const wait = setInterval(() => {
        if (first.calls.length > 0) {
          clearInterval(wait)
          resolve()
        }
      }, 5)
    })
    await cut.detach()
    const second = scenario(schema)
    const resumed = await second.runtime.resume('cut')
    second.release()
    expect(await resumed.result).toBe('done')

    // The call cut off runs again, with its first key (the run id aside) and the same arguments.
    const keyOf = (call: { key: string }) => call.key.slice(call.key.indexOf(':'))
    expect(second.calls.map(keyOf)).toEqual(first.calls.map(keyOf))
    expect(keyOf(second.calls[0]!)).toBe(keyOf(straight.calls[0]!))
    expect(second.calls[0]!.args).toEqual({ zeta: 1, a: 2 })
    expect(second.prompts).toEqual(straight.prompts)
  })
})
