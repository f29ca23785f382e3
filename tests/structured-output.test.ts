import { createRuntime, defineAgent, type ModelRequest, scriptedModel } from '@cohort/core'
import { describe, expect, expectTypeOf, test } from 'vitest'
import { z } from 'zod'
import { settledResults } from './support/scripts.js'

const city = z.object({ city: z.string(), population: z.number().int().min(0) })
const researcher = defineAgent({ name: 'researcher', instructions: 'Find one city.', output: city })
const lead = defineAgent({ name: 'lead', instructions: 'Ask, then report.', subagents: [researcher] })

describe('defineAgent({ output }): a typed finish', () => {
  test("a run's result has the type of its agent's output schema, and a name the runtime was not given does not compile", async () => {
    const model = scriptedModel({
      researcher: [{ action: 'finish', result: { city: 'Lyon', population: 520_000 } }],
      lead: [{ action: 'finish', result: 'done' }],
    })
    const runtime = createRuntime({ agents: [lead, researcher], model })
    const run = runtime.start('researcher', 'a city')
    expectTypeOf(run.result).resolves.toEqualTypeOf<{ city: string; population: number }>()
    expect((await run.result).city).toBe('Lyon')
    // An agent without an output schema gives what its model finished with.
    expectTypeOf(runtime.run('lead', 'go')).resolves.toBeUnknown()
    expect(await runtime.run('lead', 'go')).toBe('done')
    // @ts-expect-error: 'reseacher' is no agent of this runtime
    expect(() => runtime.start('reseacher', 'a city')).toThrow(/unknown agent "reseacher"/)
  })

  test('a result that does not fit is refused to the model with the field; the one that fits reaches the parent', async () => {
    const told: string[] = []
    let offered: ModelRequest['tools'] = []
    let prompts: string[] = []
    const model = scriptedModel({
      lead: [
        (request) => {
          prompts = request.messages.filter((m) => m.role === 'system').map((m) => m.content)
          return { action: 'launch_subagents', agents: [{ agent: 'researcher', task: 'Oslo', id: 'oslo' }] }
        },
        { action: 'wait_for_subagents' },
        (request) => ({ action: 'finish', result: settledResults(request) }),
      ],
      researcher: [
        (request) => {
          offered = request.tools
          prompts.push(request.messages[0]!.content)
          return { action: 'finish', result: { city: 'Oslo', population: 'many' } }
        },
        (request) => {
          told.push(request.messages.at(-1)!.content)
          // Its result as JSON in a string, as models often write it: taken, parsed.
          return { action: 'finish', result: '{"city": "Oslo", "population": 709000}' }
        },
      ],
    })
    const runtime = createRuntime({ agents: [lead, researcher], model })
    const results = (await runtime.run('lead', 'go')) as { id: string; status: string; result: unknown }[]

    expect(results).toEqual([
      expect.objectContaining({
        id: 'oslo',
        status: 'completed',
        result: { city: 'Oslo', population: 709000 },
      }),
    ])
    expect(told[0]).toMatch(
      /the finish result does not match this agent's output schema: result\.population: /,
    )
    // Native tool callers are offered the shape; JSON-in-text models read it in the prompt, and so does the parent.
    const finish = offered.find((spec) => spec.name === 'finish')
    expect(finish?.parameters).toMatchObject({
      properties: { result: { type: 'object', required: ['city', 'population'] } },
      required: ['result'],
    })
    expect(prompts[1]).toMatch(/RESULT must match \{"type":"object"/)
    expect(prompts[0]).toMatch(/- researcher: Find one city\. Returns \{"type":"object"/)
  })

  test('out of repairs, the agent fails with PARSE_ERROR naming the field', async () => {
    const model = scriptedModel({ researcher: () => ({ action: 'finish', result: { city: 'Oslo' } }) })
    const runtime = createRuntime({ agents: [researcher], model, limits: { maxRepairs: 1 } })
    await expect(runtime.run('researcher', 'go')).rejects.toMatchObject({
      code: 'AGENT_FAILED',
      message:
        "agent researcher failed: the finish result does not match this agent's output schema: result.population: Invalid input: expected number, received undefined",
    })
  })

  test('an output that is no zod schema is refused when the agent is defined', () => {
    expect(() => defineAgent({ name: 'x', output: { type: 'object' } as never })).toThrow(
      /agent "x": output must be a zod schema/,
    )
  })
})
