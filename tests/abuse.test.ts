import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { PassThrough } from 'node:stream'
import { inspect } from 'node:util'
import {
  type ChatModel,
  createLogger,
  createRuntime,
  defineAgent,
  defineTool,
  fileStore,
  InvalidInputError,
  type ModelReply,
  memoryStore,
  type Runtime,
  scriptedModel,
  sleep,
} from '@cohort/core'
import { expect, test } from 'vitest'
import { z } from 'zod'

const worker = defineAgent({ name: 'worker', instructions: '', tools: [sleep] })
const lead = defineAgent({ name: 'lead', instructions: '', subagents: [worker] })
const finishing = scriptedModel({
  lead: [{ action: 'finish', result: 1 }],
  worker: [{ action: 'finish', result: 1 }],
})

test('run ids with path separators or dots are refused before anything is touched', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'cohort-abuse-'))
  const runtime = createRuntime({
    agents: [lead, worker],
    model: finishing,
    store: fileStore(path.join(dir, 'runs')),
  })
  for (const bad of ['../x', '../../etc/passwd', 'a/b', 'a\\b', '..', '.', '', 'x'.repeat(65), 'ok\n']) {
    expect(() => runtime.start('lead', 'go', { runId: bad })).toThrow(InvalidInputError)
    await expect(runtime.resume(bad)).rejects.toThrow(/invalid run id .*expected 1-64 letters, digits/)
  }
  expect(await readdir(dir)).toEqual([])
  await rm(dir, { recursive: true, force: true })
})

test('unregistered agents and bad options are refused with what was expected', () => {
  // Typed as any runtime: TypeScript itself refuses a name the runtime was not given; JavaScript does not.
  const runtime: Runtime = createRuntime({ agents: [lead, worker], model: finishing })
  expect(() => runtime.start('ghost', 'go')).toThrow(/unknown agent "ghost"; registered agents: lead, worker/)
  expect(() => runtime.start('cohort-plan', 'go')).toThrow(/unknown agent "cohort-plan"/)
  expect(() => runtime.start('lead', '   ')).toThrow(/task must be a non-empty string/)
  expect(() => createRuntime({ agents: [lead], model: finishing })).toThrow(
    /lists sub-agent "worker", which is not among/,
  )
  expect(() => createRuntime({ agents: [worker], model: finishing, limits: { maxDepth: -1 } })).toThrow(
    /invalid limits: maxDepth/,
  )
  // Past what a timer can wait (about 24.8 days), Node would fire it at once.
  expect(() => createRuntime({ agents: [worker], model: finishing, limits: { timeoutMs: 3e9 } })).toThrow(
    /invalid limits: timeoutMs: .*at most 2147483647/,
  )
  expect(() =>
    runtime.runPlan({ agents: [{ id: 'a', agent: 'worker', task: 't', timeout_ms: 3e9 }] }),
  ).toThrow(/invalid plan: agents.0.timeout_ms/)
  expect(() =>
    createRuntime({ agents: [worker], model: finishing, scheduler: { startIntervalMs: 3e9 } }),
  ).toThrow(/invalid scheduler option startIntervalMs/)
  expect(() => runtime.runPlan({ agents: [{ id: '../x', agent: 'worker', task: 't' }] })).toThrow(
    /invalid plan: agents.0.id/,
  )
  expect(() => runtime.runPlan({ agents: [{ id: 'a', agent: 'ghost', task: 't' }] })).toThrow(
    /names unknown agent "ghost"/,
  )
  expect(() => defineAgent({ name: '../evil', instructions: '' })).toThrow(/agent name "..\/evil" is invalid/)
})

test("a run's options that are no object (null, a run id alone) or hold an unknown key are refused with what was expected", async () => {
  const runtime = createRuntime({ agents: [lead, worker], model: finishing })
  // As from JavaScript.
  const loose = runtime as unknown as Record<
    'start' | 'run' | 'runPlan' | 'prepareRun',
    (...args: unknown[]) => unknown
  >
  const plan = { agents: [{ id: 'a', agent: 'worker', task: 't' }] }
  for (const bad of [null, 'nightly-1', ['nightly-1']]) {
    expect(() => loose.start('lead', 't', bad)).toThrow(InvalidInputError)
    expect(() => loose.runPlan(plan, bad)).toThrow(InvalidInputError)
    await expect(loose.run('lead', 't', bad)).rejects.toThrow(InvalidInputError)
    await expect(loose.prepareRun('lead', 't', bad)).rejects.toThrow(InvalidInputError)
  }
  expect(() => loose.start('lead', 't', null)).toThrow(
    /^a run's options must be an object such as \{ runId: "nightly-1" \}, or left out; got null$/,
  )
  expect(() => loose.runPlan(plan, 'nightly-1')).toThrow(
    /^a run's options must be an object .*; got the string "nightly-1"$/,
  )
  // An unknown key is a typo or an option this version lacks: refused, not ignored.
  const unknownKey = /^unknown run option "priority"; a run's options are: runId, continueFrom$/
  expect(() => loose.start('lead', 't', { priority: 9 })).toThrow(unknownKey)
  expect(() => loose.runPlan(plan, { runid: 'x' })).toThrow(/unknown run option "runid"/)
  // runPlan refuses continueFrom: it is not offered.
  expect(() => loose.runPlan(plan, { priority: 9 })).toThrow(
    /^unknown run option "priority"; runPlan's options are: runId$/,
  )
  await expect(loose.run('lead', 't', { priority: 9 })).rejects.toThrow(unknownKey)
  await expect(loose.prepareRun('lead', 't', { priority: 9 })).rejects.toThrow(InvalidInputError)
  expect(runtime.active()).toEqual([])
  // Left out, or undefined as from a caller that passes its own optional value on.
  expect(await runtime.run('lead', 't')).toBe(1)
  expect(await runtime.run('lead', 't', undefined)).toBe(1)
})

test('an oversized reply is refused to the model, then fails the agent, and the run settles', async () => {
  const huge = `{"action":"finish","result":"${'x'.repeat(1_000_000)}"}`
  const model = scriptedModel({ worker: () => huge })
  const runtime = createRuntime({ agents: [worker], model, limits: { maxRepairs: 1 } })
  const error = await runtime.run('worker', 'go').catch((e: unknown) => e)
  expect((error as { cause?: unknown }).cause).toMatchObject({ code: 'PARSE_ERROR' })
  expect((error as Error).message).toMatch(/is \d{7} characters long; at most 200000 are accepted/)
})

test('a fork bomb (always launch the maximum) is bounded by the limits and the run ends', async () => {
  const bomber = defineAgent({ name: 'bomber', instructions: '', subagents: ['bomber'] })
  const model = scriptedModel({
    bomber: (request) =>
      request.turn % 2 === 0
        ? {
            action: 'launch_subagents',
            agents: Array.from({ length: 5 }, (_, i) => ({
              agent: 'bomber',
              task: 'boom',
              id: `b${request.turn}-${i}`,
            })),
          }
        : { action: 'wait_for_subagents' },
  })
  const runtime = createRuntime({
    agents: [bomber],
    model,
    limits: { maxAgents: 40, maxDepth: 3, maxChildrenPerLaunch: 5, maxSteps: 6, maxRepairs: 1 },
  })
  const run = runtime.start('bomber', 'boom')
  const refusals: string[] = []
  run.on('agent.repair', (event) => refusals.push(event.error))
  await expect(run.result).rejects.toThrow()
  const snapshot = await run.snapshot()
  expect(snapshot.agents.length).toBeLessThanOrEqual(40)
  expect(snapshot.agents.every((a) => a.status === 'completed' || a.status === 'failed')).toBe(true)
  expect(refusals.some((r) => /maximum depth is 3|maximum of 40/.test(r))).toBe(true)
})

test('API keys and configured secrets never reach logs, events or stored records', async () => {
  const secret = 'sk-live-TOPSECRET-0123456789'
  const apiKey = 'sk-env-OPENAI-KEY-abcdef'
  const previous = process.env.OPENAI_API_KEY
  process.env.OPENAI_API_KEY = apiKey
  const dir = await mkdtemp(path.join(tmpdir(), 'cohort-secrets-'))
  try {
    const leaky = defineTool({
      name: 'leaky',
      description: 'returns credentials',
      parameters: z.object({}),
      execute: () => ({ token: secret, nested: [`Bearer ${apiKey}`] }),
    })
    // What JSON cannot say (a BigInt, a Map) beside a secret.
    const rich = defineTool({
      name: 'rich',
      description: 'returns credentials in a Map',
      parameters: z.object({}),
      execute: () => ({ id: 7n, headers: new Map([['authorization', `Bearer ${secret}`]]) }),
    })
    const failing = defineTool({
      name: 'failing',
      description: 'fails loudly',
      parameters: z.object({}),
      execute: () => {
        throw new Error(`auth failed for ${secret}`)
      },
    })
    const agent = defineAgent({ name: 'agent', instructions: '', tools: [leaky, rich, failing] })
    const model = scriptedModel({
      agent: [
        { text: `my key is ${apiKey}; {"action":"call_tool","tool":"leaky","args":{}}` },
        { action: 'call_tool', tool: 'rich', args: {} },
        { action: 'call_tool', tool: 'failing', args: {} },
        (request) => ({ action: 'finish', result: request.messages.map((m) => m.content).join('\n') }),
      ],
    })
    const stream = new PassThrough()
    let console = ''
    stream.on('data', (chunk: Buffer) => {
      console += chunk
    })
    const logger = createLogger({ dir: path.join(dir, 'logs'), stream, colors: false })
    const runtime = createRuntime({
      agents: [agent],
      model,
      store: fileStore(path.join(dir, 'runs')),
      logger,
      secrets: [secret],
    })
    const run = runtime.start('agent', `use ${secret} wisely`)
    const events: unknown[] = []
    run.on('event', (event) => events.push(event))
    const result = await run.result
    await logger.close?.()

    const files = await readAll(dir)
    expect(files.length).toBeGreaterThan(3)
    const everything = [console, inspect(events, { depth: null }), inspect(result), ...files].join('\n')
    expect(everything).toContain('[redacted]')
    expect(everything).not.toContain(secret)
    expect(everything).not.toContain(apiKey)
  } finally {
    if (previous === undefined) delete process.env.OPENAI_API_KEY
    else process.env.OPENAI_API_KEY = previous
    await rm(dir, { recursive: true, force: true })
  }
})

async function readAll(dir: string): Promise<string[]> {
  const out: string[] = []
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) out.push(await readFile(path.join(entry.parentPath, entry.name), 'utf8'))
  }
  return out
}

test('a model adapter that answers out of shape fails its call with the field, and nothing unreadable is stored', async () => {
  const replies: unknown[] = [
    { toolCalls: [{ name: 'finish', arguments: '{"result":1}' }] },
    { text: 'hi', usage: { promptTokens: Number.NaN, completionTokens: 1 } },
    { text: 'hi', usage: { promptTokens: '12', completionTokens: 1 } },
    { toolCalls: 'finish' },
    'finish',
  ]
  const fields = ['toolCalls.0.id', 'usage.promptTokens', 'usage.promptTokens', 'toolCalls', '(the reply)']
  for (const [index, reply] of replies.entries()) {
    const model: ChatModel = { name: 'sloppy', complete: async () => reply as ModelReply }
    const solo = defineAgent({ name: 'solo', instructions: '' })
    const store = memoryStore()
    const runtime = createRuntime({ agents: [solo], model, store })
    const error = await runtime.run('solo', 'go', { runId: `sloppy-${index}` }).catch((e: unknown) => e)
    expect(String(error), JSON.stringify(reply)).toContain(
      `model sloppy returned a malformed reply: ${fields[index]}: `,
    )
    // What was stored reads back.
    expect((await store.loadRun(`sloppy-${index}`))?.run.status).toBe('failed')
  }
})

test('createRuntime, defineAgent and defineTool refuse options of the wrong shape or name, naming the field', () => {
  const solo = defineAgent({ name: 'solo', instructions: '' })
  const model = scriptedModel({})
  const refused: [Record<string, unknown>, RegExp][] = [
    [
      { limit: { maxSteps: 1 } },
      /createRuntime: \(the options\): Unrecognized key: "limit"; options are agents, model/,
    ],
    [{ model: 'gpt-4' }, /createRuntime: model: expected a ChatModel/],
    [{ store: '/tmp/runs' }, /createRuntime: store: expected a RunStore/],
    // One string would be spread into characters, each too short to redact: the key would be stored.
    [{ secrets: 'sk-live-abcdefghijklmnop' }, /createRuntime: secrets: expected a list of strings/],
    [{ storeTimeoutMs: -1 }, /createRuntime: storeTimeoutMs: /],
    [{ onCycle: 'whatever' }, /createRuntime: onCycle: /],
    [{ logger: 'console' }, /createRuntime: logger: expected an EventSink/],
    [
      { inspect: 'yes' },
      /createRuntime: inspect: expected an XState inspector: a function of inspection events, or an observer$/,
    ],
    // What @statelyai/inspect's createBrowserInspector() returns: XState takes its `inspect`.
    [
      { inspect: { inspect: { next: () => {} }, start: () => {}, stop: () => {}, adapter: {} } },
      /inspect: expected an XState inspector: a function of inspection events, or an observer \(given an inspector of @statelyai\/inspect: pass its \.inspect, as createActor takes it\)$/,
    ],
    [{ agents: [{ name: 'x' }] }, /agents\[0\] \("x"\) is not an agent definition: make it with defineAgent/],
  ]
  for (const [options, message] of refused) {
    expect(
      () => createRuntime({ agents: [solo], model, ...options } as never),
      JSON.stringify(options),
    ).toThrow(message)
  }
  expect(() => defineAgent({ name: null as never })).toThrow(/agent name "null" is invalid/)
  expect(() => defineAgent({ name: 'a', tools: ['sleep' as never] })).toThrow(/"sleep" in tools is no tool/)
  // Another library's tool: JSON Schema parameters, no name; it would fail mid-run.
  const foreign = { description: 'd', inputSchema: { type: 'object' }, execute: () => 1 }
  expect(() => defineAgent({ name: 'a', tools: [foreign as never] })).toThrow(
    /agent "a": \{"description":"d","inputSchema":\{"type":"object"\}\} in tools is no tool; expected one made by defineTool/,
  )
  expect(() => defineAgent({ name: 'a', subagents: [null as never] })).toThrow(/subagents must be a list/)
  expect(() =>
    defineTool({ name: 't', description: 'd', parameters: z.object({}), execute: 'x' as never }),
  ).toThrow(/tool "t": execute must be a function/)
  expect(() =>
    defineTool({ name: 't', description: 'd', parameters: { type: 'object' } as never, execute: () => 1 }),
  ).toThrow(/tool "t": parameters must be a zod schema/)
  // Models give arguments as one JSON object; OpenAI refuses a function whose schema is not one.
  expect(() => defineTool({ name: 't', description: 'd', parameters: z.string(), execute: () => 1 })).toThrow(
    /tool "t": parameters must be an object schema, such as z\.object\(\{ … \}\); got one of type "string"/,
  )
})

test('defineAgent, defineTool and fileStore refuse a mistake with an InvalidInputError saying what was expected', () => {
  /** defineTool of a good tool with `extra` options over it. */
  const toolWith = (extra: object) => () =>
    defineTool({ name: 't', description: 'd', parameters: z.object({}), execute: () => 1, ...extra } as never)
  const refused: [() => unknown, RegExp][] = [
    [
      () => defineAgent(undefined as never),
      /defineAgent: expected options such as \{ name: 'writer'.*got undefined$/,
    ],
    // Not 'agent name "undefined" is invalid'.
    [
      () => defineAgent({ instructions: 'Answer.' } as never),
      /^agent name is missing: give defineAgent a name/,
    ],
    [
      () => defineTool({ description: 'd', parameters: z.object({}), execute: () => 1 } as never),
      /^tool name is missing: give defineTool a name/,
    ],
    [() => defineAgent({ name: '../evil' }), /agent name "..\/evil" is invalid/],
    [() => defineAgent({ name: 'a', priority: Number.NaN }), /priority must be a finite number/],
    // Each of these was accepted, then failed the run ("model.complete is not a function") or never.
    [
      () => defineAgent({ name: 'a', model: {} as never }),
      /agent "a": model must be a ChatModel, an object with a name and complete\(request\).*got an object without a string name or a complete function/,
    ],
    [
      () => defineAgent({ name: 'a', model: 'gpt-4o' as never }),
      /agent "a": model must be a ChatModel.*got the string "gpt-4o"/,
    ],
    [
      () => defineAgent({ name: 'a', instructions: 5 as never }),
      /agent "a": instructions must be a string .*got number 5/,
    ],
    [
      () => defineAgent({ name: 'a', instruction: 'Answer.' } as never),
      /agent "a": unknown option "instruction"; options are name, instructions, tools/,
    ],
    [
      () => defineAgent({ name: 'a', limits: { maxSteps: 0 } }),
      /invalid limits of agent "a": maxSteps: .*at least 1/,
    ],
    [
      () => defineAgent({ name: 'a', fallback: () => 'late' }),
      /agent "a": fallback must be a value its parent can receive .*got a function/,
    ],
    // Nested, superjson would drop it or read it back as another value once stored.
    [
      () => defineAgent({ name: 'a', fallback: { pick: () => 'late' } }),
      /agent "a": the fallback holds a function at \.pick: a run cannot store it/,
    ],
    [
      () => defineAgent({ name: 'a', fallback: { at: new (class Region {})() } }),
      /agent "a": the fallback holds an instance of class Region at \.at/,
    ],
    [
      toolWith({ needsApproval: 'yes' }),
      /tool "t": needsApproval must be true, false or a function \(args\) => boolean, got the string "yes"/,
    ],
    // A misspelt needsApproval would leave the tool running without asking anyone.
    [
      toolWith({ approval: true }),
      /tool "t": unknown option "approval"; options are name, description, parameters, execute, needsApproval/,
    ],
    [
      () => defineTool(undefined as never),
      /defineTool: expected a definition \{ name, description, parameters, execute \}, got undefined$/,
    ],
    [
      () => defineTool({ name: '9', description: 'd', parameters: z.object({}), execute: () => 1 }),
      /tool name "9" is invalid/,
    ],
    // The model reads the description to know what the tool is for.
    [
      () => defineTool({ name: 't', parameters: z.object({}), execute: () => 1 } as never),
      /tool "t": description must be a non-empty string.*got undefined/,
    ],
    [
      () => defineTool({ name: 't', description: ' ', parameters: z.object({}), execute: () => 1 }),
      /tool "t": description must be a non-empty string/,
    ],
    [() => fileStore(''), /fileStore: expected the path of the folder to keep runs in.*got the string ""/],
    [() => fileStore(undefined as never), /fileStore: expected the path .*got undefined/],
  ]
  for (const [call, message] of refused) {
    expect(call).toThrow(message)
    expect(call).toThrow(InvalidInputError)
  }
})

test('a tool made by defineTool, spread into another with a change, is a definition again', async () => {
  const search = defineTool({
    name: 'search',
    description: 'Searches',
    parameters: z.object({ q: z.string() }),
    execute: ({ q }) => `found ${q}`,
  })
  const guarded = defineTool({ ...search, name: 'guarded_search', needsApproval: true })
  expect(guarded).toMatchObject({
    name: 'guarded_search',
    needsApproval: true,
    jsonSchema: search.jsonSchema,
  })
  expect(await guarded.execute({ q: 'cats' }, {} as never)).toBe('found cats')
})

test('an agent\'s maxSteps below 1 is told "at least 1", as the hint says', () => {
  const tooSmall =
    /maxSteps: Too small: expected number to be >=1; .*maxSteps, maxChildrenPerLaunch and maxAgents at least 1/
  expect(() => defineAgent({ name: 'stepless', limits: { maxSteps: -1 } })).toThrow(tooSmall)
  // A definition made without defineAgent is checked by createRuntime.
  const stepless = { ...defineAgent({ name: 'stepless' }), limits: { maxSteps: -1 } }
  expect(() => createRuntime({ agents: [stepless], model: finishing })).toThrow(tooSmall)
})

test('a generated run id never begins with "-", which a command line would take for an option', async () => {
  const solo = defineAgent({ name: 'solo', instructions: '' })
  const runtime = createRuntime({
    agents: [solo],
    model: scriptedModel({ solo: () => ({ action: 'finish', result: 1 }) }),
  })
  const runs = Array.from({ length: 300 }, () => runtime.start('solo', 'go'))
  await Promise.all(runs.map((run) => run.result))
  for (const run of runs) expect(run.id).toMatch(/^[A-Za-z0-9]{12}$/)
})
