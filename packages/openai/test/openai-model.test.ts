import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { inspect } from 'node:util'
import {
  type CohortEvent,
  createLogger,
  createRuntime,
  defineAgent,
  defineTool,
  fileStore,
  ModelError,
  type ModelRequest,
  type ModelRetry,
} from '@cohort/core'
import { afterEach, describe, expect, test, vi } from 'vitest'
import { z } from 'zod'
import { modelFromEnv, openaiModel } from '../src/index.js'
import {
  type Answer,
  completion,
  lastMessage,
  type OpenAIServer,
  startOpenAIServer,
  streamChunks,
} from './openai-server.js'

const apiKey = 'sk-test-5ecret-key-0123456789'
let server: OpenAIServer | undefined
afterEach(async () => {
  await server?.close()
  server = undefined
})

async function serve(respond: (request: OpenAIServer['requests'][number], index: number) => Answer) {
  server = await startOpenAIServer(respond)
  return server
}

function request(overrides: Partial<ModelRequest> = {}): ModelRequest {
  return {
    runId: 'r1',
    agent: { id: 'lead', name: 'lead', depth: 0, parentId: null, task: 'a task' },
    turn: 0,
    messages: [
      { role: 'system', content: 'be useful' },
      { role: 'user', content: 'a task' },
    ],
    tools: [
      { name: 'finish', description: 'End.', parameters: { type: 'object', properties: { result: {} } } },
    ],
    signal: new AbortController().signal,
    ...overrides,
  }
}

const lookup = defineTool({
  name: 'lookup',
  description: 'Looks a word up.',
  parameters: z.object({ word: z.string().min(1) }),
  execute: ({ word }) => `${word}: a thing`,
})
const worker = defineAgent({ name: 'worker', instructions: 'Look the word up and finish.', tools: [lookup] })
const lead = defineAgent({ name: 'lead', instructions: 'Fan out and report.', subagents: [worker] })

/** A server that plays the lead (native tool calls) and the workers (a tool, then JSON in text). */
function leadAndWorkers(failWorker?: string): (request: OpenAIServer['requests'][number]) => Answer {
  return (request) => {
    const names = (request.body.tools ?? []).map(
      (tool) => (tool as { function: { name: string } }).function.name,
    )
    const messages = request.body.messages ?? []
    if (names.includes('launch_subagents')) {
      if (messages.length === 2) {
        return {
          json: completion({
            toolCalls: [
              {
                name: 'launch_subagents',
                arguments: {
                  agents: [
                    { agent: 'worker', task: 'apple', id: 'a' },
                    { agent: 'worker', task: 'pear', id: 'b' },
                  ],
                },
              },
              { name: 'wait_for_subagents', arguments: { ids: ['a', 'b'] } },
            ],
          }),
        }
      }
      const results = messages.at(-1)?.content ?? ''
      return { json: completion({ toolCalls: [{ name: 'finish', arguments: { result: results } }] }) }
    }
    const task = messages[1]?.content ?? ''
    if (failWorker && task.includes(failWorker)) {
      return {
        json: { error: { message: 'the model is overloaded' } },
        status: 500,
        headers: { 'retry-after-ms': '5' },
      }
    }
    if (messages.length === 2) {
      return { json: completion({ toolCalls: [{ name: 'lookup', arguments: { word: task } }] }) }
    }
    return {
      json: completion({ content: `{"action": "finish", "result": ${JSON.stringify(`found ${task}`)}}` }),
    }
  }
}

describe('openaiModel on a real local server', () => {
  test('a run of native tool calls and text replies: tools offered with JSON schemas, calls mapped to actions', async () => {
    const api = await serve(leadAndWorkers())
    const model = openaiModel({ model: 'test-model', baseURL: api.baseURL, apiKey })
    const runtime = createRuntime({ agents: [lead, worker], model })
    const run = runtime.start('lead', 'look up two words')
    const result = await run.result
    expect(String(result)).toContain('found apple')
    expect(String(result)).toContain('found pear')

    const first = api.requests[0]!
    expect(first.path).toBe('/v1/chat/completions')
    expect(first.headers.authorization).toBe(`Bearer ${apiKey}`)
    expect(first.body.model).toBe('test-model')
    const leadTools = (first.body.tools as { function: { name: string } }[]).map((tool) => tool.function.name)
    expect(leadTools).toEqual(expect.arrayContaining(['launch_subagents', 'wait_for_subagents', 'finish']))
    const workerRequest = api.requests.find((r) => lastMessage(r) === 'apple')!
    const lookupSpec = (
      workerRequest.body.tools as { function: { name: string; parameters: unknown } }[]
    ).find((tool) => tool.function.name === 'lookup')
    expect(lookupSpec?.function.parameters).toMatchObject({
      type: 'object',
      properties: { word: { type: 'string', minLength: 1 } },
      required: ['word'],
    })
    // The tool's result went back as a `tool` message answering the call's id.
    const followUp = api.requests.find(
      (r) => r.body.messages?.length === 4 && r.body.messages[1]?.content === 'apple',
    )!
    const [assistant, toolReply] = followUp.body.messages!.slice(2) as {
      role: string
      tool_calls?: { id: string }[]
      tool_call_id?: string
      content: string
    }[]
    expect(assistant?.tool_calls?.[0]?.id).toBe(toolReply?.tool_call_id)
    expect(toolReply).toMatchObject({ role: 'tool', content: expect.stringContaining('apple: a thing') })

    // Usage is recorded per call and per agent.
    const metrics = run.metrics()
    expect(metrics.tokens).toEqual({ prompt: 100 * 6, completion: 20 * 6, total: 120 * 6 })
    expect(metrics.perAgent.find((agent) => agent.id === 'lead')?.tokens).toBe(240)
  })

  test("tools are offered the schema of the input the model sends: defaults optional, a transform's input type", async () => {
    const api = await serve((received, index) => ({
      json:
        index === 0
          ? completion({ toolCalls: [{ name: 'add', arguments: { a: 2, n: '3' } }] })
          : completion({ content: JSON.stringify({ action: 'finish', result: lastMessage(received) }) }),
    }))
    const add = defineTool({
      name: 'add',
      description: 'Adds.',
      parameters: z
        .object({ a: z.number(), b: z.number().default(1), n: z.string().transform(Number) })
        .transform(({ a, b, n }) => ({ total: a + b + n })),
      execute: ({ total }) => total,
    })
    const solo = defineAgent({ name: 'solo', instructions: 'Add.', tools: [add] })
    const model = openaiModel({ model: 'm', baseURL: api.baseURL, apiKey })
    expect(await createRuntime({ agents: [solo], model }).run('solo', 'add')).toBe('6')
    const spec = (api.requests[0]!.body.tools as { function: { name: string; parameters: unknown } }[]).find(
      (tool) => tool.function.name === 'add',
    )
    expect(spec?.function.parameters).toEqual({
      type: 'object',
      properties: { a: { type: 'number' }, b: { type: 'number', default: 1 }, n: { type: 'string' } },
      required: ['a', 'n'],
    })
  })

  test('text protocol: no tools are sent, and the JSON actions in the reply are used', async () => {
    const api = await serve(() => ({
      json: completion({ content: '```json\n{"action":"finish","result":42}\n```' }),
    }))
    const model = openaiModel({ model: 'm', baseURL: api.baseURL, apiKey, protocol: 'text' })
    const reply = await model.complete(request())
    expect(api.requests[0]!.body.tools).toBeUndefined()
    expect(reply.text).toContain('"result":42')
    expect(reply.toolCalls).toBeUndefined()
  })

  test('auto protocol: a server that refuses tools is spoken to in text from then on', async () => {
    const api = await serve((received) =>
      received.body.tools
        ? { json: { error: { message: 'model llama2 does not support tools' } }, status: 400 }
        : { json: completion({ content: '{"action":"finish","result":"ok"}' }) },
    )
    const model = openaiModel({ model: 'llama2', baseURL: api.baseURL, apiKey })
    expect((await model.complete(request())).text).toContain('"ok"')
    await model.complete(request())
    expect(api.requests.map((r) => Boolean(r.body.tools))).toEqual([true, false, false])
  })

  test("auto protocol: vLLM's refusal of tools, an error body without an `error` field, switches to text", async () => {
    const refusal = '"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set'
    const api = await serve((received) =>
      received.body.tools
        ? {
            json: { object: 'error', message: refusal, type: 'BadRequestError', param: null, code: 400 },
            status: 400,
          }
        : { json: completion({ content: '{"action":"finish","result":"ok"}' }) },
    )
    const model = openaiModel({ model: 'm', baseURL: api.baseURL, apiKey })
    expect((await model.complete(request())).text).toContain('"ok"')
    expect(api.requests.map((r) => Boolean(r.body.tools))).toEqual([true, false])
  })

  test("the message of error bodies in other shapes is kept: vLLM's, FastAPI's `detail`, TGI's `error` string", async () => {
    const bodies = [
      { object: 'error', message: "This model's maximum context length is 4096 tokens.", code: 400 },
      { detail: [{ loc: ['body', 'messages'], msg: 'field required', type: 'value_error.missing' }] },
      { detail: 'Not authenticated' },
      { error: 'Input validation error: `inputs` tokens + `max_new_tokens` must be <= 4096' },
    ]
    const api = await serve((_, index) => ({ json: bodies[index], status: index === 0 ? 400 : 422 }))
    const model = openaiModel({ model: 'm', baseURL: api.baseURL, apiKey, protocol: 'tools' })
    const messages: string[] = []
    for (const _ of bodies) {
      messages.push(
        await model.complete(request()).then(
          () => 'no error',
          (e: Error) => e.message,
        ),
      )
    }
    expect(messages).toEqual([
      "model m: HTTP 400: This model's maximum context length is 4096 tokens.",
      'model m: HTTP 422: body.messages: field required',
      'model m: HTTP 422: Not authenticated',
      'model m: HTTP 422: Input validation error: `inputs` tokens + `max_new_tokens` must be <= 4096',
    ])
  })

  test('auto protocol: a request too long for the context, which names the functions, keeps the tools', async () => {
    const tooLong =
      "This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 tokens (including 312 in the functions). Please reduce the length of the messages or functions."
    const api = await serve((_, index) =>
      index === 0
        ? { json: { error: { message: tooLong, code: 'context_length_exceeded' } }, status: 400 }
        : { json: completion({ toolCalls: [{ name: 'finish', arguments: { result: 'ok' } }] }) },
    )
    const model = openaiModel({ model: 'm', baseURL: api.baseURL, apiKey })
    await expect(model.complete(request())).rejects.toThrow(/HTTP 400: This model's maximum context length/)
    expect((await model.complete(request())).toolCalls).toHaveLength(1)
    expect(api.requests.map((r) => Boolean(r.body.tools))).toEqual([true, true])
  })

  test('auto protocol: a tool schema the server refuses is an error of that call, not a server without tools', async () => {
    const refused =
      "Invalid schema for function 'lookup': schema must be a JSON Schema of 'type: \"object\"', got 'type: \"string\"'."
    const api = await serve((_, index) =>
      index === 0
        ? { json: { error: { message: refused, param: 'tools[0].function.parameters' } }, status: 400 }
        : { json: completion({ toolCalls: [{ name: 'finish', arguments: { result: 'ok' } }] }) },
    )
    const model = openaiModel({ model: 'm', baseURL: api.baseURL, apiKey })
    await expect(model.complete(request())).rejects.toThrow(/HTTP 400: Invalid schema for function/)
    expect((await model.complete(request())).toolCalls).toHaveLength(1)
    expect(api.requests.map((r) => Boolean(r.body.tools))).toEqual([true, true])
  })

  test('streaming: a server that repeats the function name in every delta of a call gives that name once', async () => {
    const chunks = streamChunks([], { name: 'finish', arguments: { result: 1 } }) as {
      choices: { delta: { tool_calls?: { function: { name?: string } }[] } }[]
    }[]
    for (const chunk of chunks)
      for (const call of chunk.choices[0]?.delta.tool_calls ?? []) call.function.name = 'finish'
    const api = await serve(() => ({ sse: chunks }))
    const model = openaiModel({ model: 'm', baseURL: api.baseURL, apiKey, stream: true })
    expect((await model.complete(request())).toolCalls).toEqual([
      { id: 'call_s1', name: 'finish', arguments: '{"result":1}' },
    ])
  })

  test('streaming: parallel tool calls without `index` are told apart by their ids', async () => {
    const chunk = (toolCalls: unknown[]) => ({
      object: 'chat.completion.chunk',
      choices: [{ index: 0, delta: { tool_calls: toolCalls } }],
    })
    const api = await serve(() => ({
      sse: [
        chunk([{ id: 'c0', type: 'function', function: { name: 'lookup', arguments: '{"word":' } }]),
        chunk([{ function: { arguments: '"a"}' } }]),
        chunk([{ id: 'c1', type: 'function', function: { name: 'finish', arguments: '{"result":1}' } }]),
      ],
    }))
    const model = openaiModel({ model: 'm', baseURL: api.baseURL, apiKey, stream: true })
    expect((await model.complete(request())).toolCalls).toEqual([
      { id: 'c0', name: 'lookup', arguments: '{"word":"a"}' },
      { id: 'c1', name: 'finish', arguments: '{"result":1}' },
    ])
  })

  test('streaming: fragments reach onToken as they come; tool-call deltas and usage are assembled', async () => {
    const api = await serve(() => ({
      sse: streamChunks(['Let me ', 'finish.'], { name: 'finish', arguments: { result: { answer: 7 } } }),
      chunkDelayMs: 5,
    }))
    const model = openaiModel({ model: 'm', baseURL: api.baseURL, apiKey, stream: true })
    const tokens: string[] = []
    const reply = await model.complete(request({ onToken: (text) => tokens.push(text) }))
    expect(api.requests[0]!.body).toMatchObject({ stream: true, stream_options: { include_usage: true } })
    expect(tokens).toEqual(['Let me ', 'finish.'])
    expect(reply.text).toBe('Let me finish.')
    expect(reply.toolCalls).toEqual([{ id: 'call_s1', name: 'finish', arguments: '{"result":{"answer":7}}' }])
    expect(reply.usage).toEqual({ promptTokens: 50, completionTokens: 7 })
  })

  test('streamed tokens are events of the run', async () => {
    const api = await serve(() => ({ sse: streamChunks(['{"action":"finish",', '"result":"streamed"}']) }))
    const solo = defineAgent({ name: 'solo', instructions: 'Answer.' })
    const model = openaiModel({ model: 'm', baseURL: api.baseURL, apiKey, stream: true, protocol: 'text' })
    const run = createRuntime({ agents: [solo], model }).start('solo', 'say it')
    const tokens: string[] = []
    run.on('model.token', (event) => tokens.push((event as { text: string }).text))
    expect(await run.result).toBe('streamed')
    expect(tokens.join('')).toBe('{"action":"finish","result":"streamed"}')
  })

  test('a stream that goes silent fails the call after timeoutMs; one the caller aborts is no reply', async () => {
    const api = await serve(() => ({ sse: streamChunks(['hel', 'lo']), stallAfter: 1 }))
    const model = openaiModel({ model: 'm', baseURL: api.baseURL, apiKey, stream: true, timeoutMs: 200 })
    const tokens: string[] = []
    const stalled = await model.complete(request({ onToken: (text) => tokens.push(text) })).catch((e) => e)
    expect(stalled).toBeInstanceOf(ModelError)
    expect(stalled.message).toMatch(/model m: the stream stalled, nothing came for 200 ms \(timeoutMs\)/)
    expect(tokens).toEqual(['hel'])

    const patient = openaiModel({ model: 'm', baseURL: api.baseURL, apiKey, stream: true })
    const controller = new AbortController()
    const cut = patient.complete(
      request({ signal: controller.signal, onToken: () => controller.abort(new Error('stop')) }),
    )
    await expect(cut).rejects.toThrow('stop')
  })

  test('a stream that stalls before its first token is retried; one that stalls after is not', async () => {
    const api = await serve((_, index) =>
      // The first chunk names the role only, as vLLM's and OpenAI's do: headers sent, no token yet.
      index === 0 ? { sse: streamChunks(['', 'hello']), stallAfter: 1 } : { sse: streamChunks(['fine']) },
    )
    const model = openaiModel({ model: 'm', baseURL: api.baseURL, apiKey, stream: true, timeoutMs: 200 })
    const retries: ModelRetry[] = []
    const reply = await model.complete(request({ onRetry: (retry) => retries.push(retry) }))
    expect(reply.text).toBe('fine')
    expect(api.requests).toHaveLength(2)
    expect(retries).toEqual([
      expect.objectContaining({ retry: 1, error: expect.stringMatching(/stream stalled/) }),
    ])
  })

  test('429 with Retry-After is retried after the time the server asked for', async () => {
    const api = await serve((_, index) =>
      index === 0
        ? { json: { error: { message: 'rate limited' } }, status: 429, headers: { 'retry-after': '1' } }
        : { json: completion({ content: 'fine' }) },
    )
    const model = openaiModel({ model: 'm', baseURL: api.baseURL, apiKey })
    const reply = await model.complete(request())
    expect(reply.text).toBe('fine')
    expect(reply.retries).toBe(1)
    expect(api.requests).toHaveLength(2)
    expect(api.requests[1]!.at - api.requests[0]!.at).toBeGreaterThanOrEqual(900)
  })

  test('a Retry-After longer than 60 s, or than timeoutMs, fails the call at once and says what was asked', async () => {
    const api = await serve((received) => ({
      json: { error: { message: 'Rate limit reached for requests', code: 'rate_limit_exceeded' } },
      status: 429,
      headers: { 'retry-after': received.body.model === 'long' ? '3600' : '3' },
    }))
    const started = performance.now()
    const hour = await openaiModel({ model: 'long', baseURL: api.baseURL, apiKey })
      .complete(request())
      .catch((e: unknown) => e)
    expect(hour).toBeInstanceOf(ModelError)
    expect(hour).toMatchObject({ status: 429, retryable: false })
    expect((hour as Error).message).toBe(
      'model long: HTTP 429: Rate limit reached for requests; the server asked to wait 3600 s before a retry, longer than the 60 s Cohort waits at most, so the call fails now',
    )
    const short = openaiModel({ model: 'short', baseURL: api.baseURL, apiKey, timeoutMs: 2_000 })
    await expect(short.complete(request())).rejects.toThrow(
      /asked to wait 3 s before a retry, longer than the 2 s Cohort waits at most/,
    )
    expect(api.requests).toHaveLength(2)
    expect(performance.now() - started).toBeLessThan(1_000)
  })

  test('each retry is a model.retrying event and a line of the log with the status and the wait', async () => {
    const api = await serve((_, index) =>
      index === 0
        ? { json: { error: { message: 'slow down' } }, status: 429, headers: { 'retry-after-ms': '20' } }
        : { json: completion({ content: '{"action":"finish","result":"done"}' }) },
    )
    const solo = defineAgent({ name: 'solo', instructions: 'Answer.' })
    const model = openaiModel({ model: 'm', baseURL: api.baseURL, apiKey, protocol: 'text' })
    const dir = await mkdtemp(path.join(tmpdir(), 'cohort-retry-'))
    const logger = createLogger({ dir, console: false })
    const run = createRuntime({ agents: [solo], model, logger }).start('solo', 'x')
    const retrying: CohortEvent[] = []
    run.on('model.retrying', (event) => retrying.push(event))
    expect(await run.result).toBe('done')
    await logger.close()
    expect(retrying).toMatchObject([
      {
        agentId: 'solo',
        turn: 0,
        retry: 1,
        maxRetries: 3,
        waitMs: 20,
        status: 429,
        error: 'model m: HTTP 429: slow down',
      },
    ])
    const files = await readdir(dir, { recursive: true })
    const texts = await Promise.all(
      files.map((file) => readFile(path.join(dir, file), 'utf8').catch(() => '')),
    )
    const log = texts.flatMap((text) => text.split('\n')).filter((line) => line.includes('retry 1 of 3'))
    expect(log).toHaveLength(1)
    expect(log[0]).toMatch(
      /\[LLM\] solo model call failed, retry 1 of 3 in 20 ms: model m: HTTP 429: slow down/,
    )
    await rm(dir, { recursive: true, force: true })
  })

  test('a cancelled call does not wait out its retry', async () => {
    const api = await serve(() => ({
      json: { error: { message: 'busy' } },
      status: 503,
      headers: { 'retry-after': '30' },
    }))
    const model = openaiModel({ model: 'm', baseURL: api.baseURL, apiKey })
    const controller = new AbortController()
    const started = performance.now()
    const call = model.complete(
      request({ signal: controller.signal, onRetry: () => controller.abort(new Error('stop')) }),
    )
    await expect(call).rejects.toThrow('stop')
    expect(performance.now() - started).toBeLessThan(1_000)
    expect(api.requests).toHaveLength(1)
  })

  test('a connection reset is retried', async () => {
    const api = await serve((_, index) =>
      index === 0 ? { reset: true } : { json: completion({ content: 'back' }) },
    )
    const model = openaiModel({ model: 'm', baseURL: api.baseURL, apiKey })
    const reply = await model.complete(request())
    expect(reply).toMatchObject({ text: 'back', retries: 1 })
  })

  test('a stream cut after its headers but before any token is retried as a reset; one cut after a token says so', async () => {
    const api = await serve((received, index) =>
      // The first chunk names the role only: headers sent, no token yet.
      received.body.model === 'late' || index === 0
        ? { sse: streamChunks(['', 'hello']), resetAfter: received.body.model === 'late' ? 2 : 1 }
        : { sse: streamChunks(['fine']) },
    )
    const model = openaiModel({ model: 'm', baseURL: api.baseURL, apiKey, stream: true })
    const retries: ModelRetry[] = []
    const reply = await model.complete(request({ onRetry: (retry) => retries.push(retry) }))
    expect(reply).toMatchObject({ text: 'fine', retries: 1 })
    expect(retries).toEqual([
      expect.objectContaining({
        error: expect.stringMatching(
          /the server closed the connection before the reply was complete \(UND_ERR_SOCKET\)$/,
        ),
      }),
    ])
    const late = openaiModel({ model: 'late', baseURL: api.baseURL, apiKey, stream: true })
    await expect(late.complete(request())).rejects.toThrow(
      /^model late: connection to .* failed: the server closed the connection before the reply was complete \(UND_ERR_SOCKET\)$/,
    )
  })

  test("an error event in a stream before any token is classified by its code: an outage's is retried", async () => {
    const api = await serve((received, index) =>
      index === 0 || received.body.model === 'gone'
        ? {
            sse: [
              {
                error: {
                  message: received.body.model === 'gone' ? 'no such model' : 'upstream overloaded',
                  code: received.body.model === 'gone' ? 404 : 503,
                },
              },
            ],
          }
        : { sse: streamChunks(['fine']) },
    )
    const model = openaiModel({ model: 'm', baseURL: api.baseURL, apiKey, stream: true })
    expect(await model.complete(request())).toMatchObject({ text: 'fine', retries: 1 })
    const gone = openaiModel({ model: 'gone', baseURL: api.baseURL, apiKey, stream: true })
    const error = await gone.complete(request()).catch((e: unknown) => e)
    expect(error).toMatchObject({ status: 404, retryable: false })
    expect((error as Error).message).toBe('model gone: error 404 in the stream: no such model')
  })

  test('a connection the server keeps closing, and an HTML error page, say what happened in a short message', async () => {
    const page =
      '<html><head><title>503 Service Temporarily Unavailable</title></head><body><center><h1>503 Service Temporarily Unavailable</h1></center><hr><center>nginx</center>' +
      ' '.repeat(5_000) +
      '</body></html>'
    const api = await serve((received) =>
      received.body.model === 'reset'
        ? { reset: true }
        : { raw: page, status: 503, contentType: 'text/html' },
    )
    const reset = openaiModel({ model: 'reset', baseURL: api.baseURL, apiKey, maxRetries: 1 })
    await expect(reset.complete(request())).rejects.toThrow(
      /^model reset: connection to .* failed \(after 1 retry\): the server closed the connection before the reply was complete \((UND_ERR_SOCKET|ECONNRESET)\)$/,
    )
    const nginx = openaiModel({ model: 'nginx', baseURL: api.baseURL, apiKey, maxRetries: 0 })
    await expect(nginx.complete(request())).rejects.toThrow(
      /^model nginx: HTTP 503: 503 Service Temporarily Unavailable$/,
    )
  })

  test("a call's retries are in its model.completed event and the run's metrics", async () => {
    const api = await serve((_, index) =>
      index === 0
        ? { reset: true }
        : { json: completion({ content: '{"action":"finish","result":"back"}' }) },
    )
    const solo = defineAgent({ name: 'solo', instructions: 'Answer.' })
    const model = openaiModel({ model: 'm', baseURL: api.baseURL, apiKey, protocol: 'text' })
    const run = createRuntime({ agents: [solo], model }).start('solo', 'x')
    const completed: CohortEvent[] = []
    run.on('model.completed', (event) => completed.push(event))
    expect(await run.result).toBe('back')
    expect(completed).toMatchObject([{ type: 'model.completed', retries: 1 }])
    expect(run.metrics().retries).toBe(1)
  })

  test('500 forever: bounded retries, then a ModelError with the status and the server message', async () => {
    const api = await serve(() => ({
      json: { error: { message: 'the model is overloaded' } },
      status: 500,
      headers: { 'retry-after-ms': '5' },
    }))
    const model = openaiModel({ model: 'm', baseURL: api.baseURL, apiKey, maxRetries: 2 })
    const error = await model.complete(request()).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(ModelError)
    expect(error).toMatchObject({ status: 500, retryable: true })
    expect((error as Error).message).toBe('model m: HTTP 500 (after 2 retries): the model is overloaded')
    expect(error).toMatchObject({ retries: 2 })
    expect(api.requests).toHaveLength(3)

    // The retries of a call that failed for good are counted too, in the agent and the run.
    const solo = defineAgent({ name: 'solo', instructions: 'Answer.' })
    const run = createRuntime({ agents: [solo], model }).start('solo', 'x')
    await run.result.catch(() => {})
    expect(run.metrics().retries).toBe(2)
    expect(run.metrics().perAgent[0]).toMatchObject({ status: 'failed', retries: 2 })
  })

  test('a 200 whose body is an error (as some gateways send) is a ModelError with its message; one of a rate limit or an outage is retried', async () => {
    const api = await serve(() => ({
      json: { error: { message: 'model is unknown', code: 'model_not_found' } },
    }))
    const model = openaiModel({ model: 'm', baseURL: api.baseURL, apiKey })
    const error = await model.complete(request()).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(ModelError)
    expect((error as Error).message).toBe('model m: the server answered with an error: model is unknown')
    expect(api.requests).toHaveLength(1)

    const busy = await serve((_, index) =>
      index === 0
        ? { json: { error: { message: 'upstream rate limited', code: 429 } } }
        : { json: completion({ content: '{"action":"finish","result":1}' }) },
    )
    const retrying = openaiModel({ model: 'm', baseURL: busy.baseURL, apiKey })
    expect(await retrying.complete(request())).toMatchObject({ retries: 1 })
    const down = await serve(() => ({ json: { error: { message: 'upstream is down', code: 503 } } }))
    const failing = openaiModel({ model: 'm', baseURL: down.baseURL, apiKey, maxRetries: 1 })
    const failure = await failing.complete(request()).catch((e: unknown) => e)
    expect(failure).toMatchObject({ status: 503, retries: 1 })
    expect((failure as Error).message).toBe('model m: HTTP 503 (after 1 retry): upstream is down')
  })

  test('an endpoint that cannot be reached, a base URL that is no URL, or one without /v1, says so', async () => {
    // A port nothing listens on: one the system gave, then closed.
    const closed = createServer()
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve))
    const { port } = closed.address() as AddressInfo
    await new Promise((resolve) => closed.close(resolve))
    const baseURL = `http://127.0.0.1:${port}/v1`
    const unreachable = openaiModel({ model: 'm', baseURL, apiKey, maxRetries: 0 })
    await expect(unreachable.complete(request())).rejects.toThrow(
      `model m: connection to ${baseURL} failed: ECONNREFUSED`,
    )
    expect(() => openaiModel({ model: 'm', baseURL: 'not a url', apiKey })).toThrow(
      /the base URL "not a url" \(baseURL or OPENAI_BASE_URL\) is not a URL/,
    )
    // An empty one is none, as the SDK took it: OpenAI's own.
    expect(() => openaiModel({ model: 'm', baseURL: '', apiKey })).not.toThrow()
    const api = await serve(() => ({ json: { error: { message: 'Not Found' } }, status: 404 }))
    const without = openaiModel({ model: 'm', baseURL: api.baseURL.replace(/\/v1\/?$/, ''), apiKey })
    await expect(without.complete(request())).rejects.toThrow(
      /HTTP 404: Not Found \(at .*; an OpenAI-compatible base URL usually ends in \/v1\)/,
    )
  })

  test('a permanent failure is not retried', async () => {
    const api = await serve(() => ({
      json: { error: { message: 'Incorrect API key provided' } },
      status: 401,
    }))
    const model = openaiModel({ model: 'm', baseURL: api.baseURL, apiKey })
    const error = await model.complete(request()).catch((e: unknown) => e)
    expect(error).toMatchObject({
      status: 401,
      retryable: false,
      message: 'model m: HTTP 401: Incorrect API key provided',
    })
    expect(api.requests).toHaveLength(1)
  })

  test('a 429 of a spent quota (insufficient_quota) is a billing error: not retried, and said so', async () => {
    const api = await serve(() => ({
      json: {
        error: {
          message: 'You exceeded your current quota, please check your plan and billing details.',
          type: 'insufficient_quota',
          param: null,
          code: 'insufficient_quota',
        },
      },
      status: 429,
    }))
    const model = openaiModel({ model: 'm', baseURL: api.baseURL, apiKey })
    const error = await model.complete(request()).catch((e: unknown) => e)
    expect(error).toMatchObject({
      status: 429,
      retryable: false,
      message:
        'model m: HTTP 429: You exceeded your current quota, please check your plan and billing details. (insufficient_quota: the account is out of credit or over its spending limit; not retried)',
    })
    expect(api.requests).toHaveLength(1)
  })

  test('a worker whose model fails for good fails alone; its sibling and the parent go on', async () => {
    const api = await serve(leadAndWorkers('pear'))
    const model = openaiModel({ model: 'test-model', baseURL: api.baseURL, apiKey, maxRetries: 1 })
    const run = createRuntime({ agents: [lead, worker], model }).start('lead', 'look up two words')
    const result = String(await run.result)
    expect(result).toContain('found apple')
    expect(result).toContain('HTTP 500 (after 1 retry): the model is overloaded')
    const stored = await run.snapshot()
    const pear = stored.agents.find((agent) => agent.id === 'lead.b')
    expect(pear?.status).toBe('failed')
  })

  test('a reply slower than the timeout fails with a clear error after its retries', async () => {
    const api = await serve(() => ({ json: completion({ content: 'late' }), delayMs: 2_000 }))
    const model = openaiModel({ model: 'm', baseURL: api.baseURL, apiKey, timeoutMs: 150, maxRetries: 1 })
    const started = performance.now()
    const error = await model.complete(request()).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(ModelError)
    expect((error as Error).message).toBe('model m: the request timed out (after 1 retry)')
    expect(api.requests).toHaveLength(2)
    expect(performance.now() - started).toBeLessThan(1_900)
  })

  test('a 200 whose body never ends, labelled JSON or not, fails after timeoutMs', async () => {
    const api = await serve((received) => ({
      raw: '{"id":',
      contentType: received.body.model === 'json' ? 'application/json' : 'text/plain',
      open: true,
    }))
    for (const name of ['json', 'text']) {
      const model = openaiModel({ model: name, baseURL: api.baseURL, apiKey, timeoutMs: 150, maxRetries: 1 })
      const started = performance.now()
      const error = await model.complete(request()).catch((e: unknown) => e)
      expect((error as Error).message).toBe(`model ${name}: the request timed out (after 1 retry)`)
      expect(performance.now() - started).toBeLessThan(1_500)
    }
    // A caller's cancel is still the caller's, not a timeout.
    const controller = new AbortController()
    const model = openaiModel({ model: 'text', baseURL: api.baseURL, apiKey, timeoutMs: 5_000 })
    setTimeout(() => controller.abort(new Error('cancelled')), 100)
    await expect(model.complete(request({ signal: controller.signal }))).rejects.toThrow('cancelled')
  })

  test('a reply cut off at max_tokens (finish_reason length) is repaired with that said, not as a reply without JSON', async () => {
    const api = await serve((_, index) =>
      index <= 1
        ? {
            json: completion({
              content: '```json\n{"action": "finish", "result": "a very long essay that got cut o',
              finishReason: 'length',
            }),
          }
        : { json: completion({ content: '{"action":"finish","result":"short"}' }) },
    )
    const model = openaiModel({ model: 'm', baseURL: api.baseURL, apiKey, protocol: 'text', maxTokens: 50 })
    expect(await model.complete(request())).toMatchObject({ finishReason: 'length' })
    const solo = defineAgent({ name: 'solo', instructions: 'Answer.' })
    const run = createRuntime({ agents: [solo], model }).start('solo', 'x')
    const repairs: string[] = []
    run.on('agent.repair', (event) => repairs.push(event.error))
    expect(await run.result).toBe('short')
    expect(repairs).toHaveLength(1)
    expect(repairs[0]).toMatch(
      /^the reply was cut off at the output token limit \(max_tokens\) before it was complete \(.+\); answer in fewer tokens$/,
    )
    expect(lastMessage(api.requests[2]!)).toContain('cut off at the output token limit (max_tokens)')
  })

  test('a refusal (content null) is told to the model with its text, not as a reply without JSON', async () => {
    const refused = { role: 'assistant', content: null, refusal: 'I cannot help with that.' }
    const api = await serve((received, index) => {
      if (received.body.stream) {
        const chunk = (delta: unknown) => ({
          object: 'chat.completion.chunk',
          choices: [{ index: 0, delta }],
        })
        return { sse: [chunk({ role: 'assistant', refusal: 'I cannot ' }), chunk({ refusal: 'help.' })] }
      }
      return index === 0
        ? {
            json: {
              object: 'chat.completion',
              choices: [{ index: 0, message: refused, finish_reason: 'stop' }],
            },
          }
        : { json: completion({ content: '{"action":"finish","result":"done"}' }) }
    })
    const model = openaiModel({ model: 'm', baseURL: api.baseURL, apiKey, protocol: 'text' })
    const solo = defineAgent({ name: 'solo', instructions: 'Answer.' })
    const run = createRuntime({ agents: [solo], model }).start('solo', 'x')
    const repairs: string[] = []
    run.on('agent.repair', (event) => repairs.push(event.error))
    expect(await run.result).toBe('done')
    expect(repairs).toEqual([
      'the model refused: "I cannot help with that."; the reply holds no action. If the task cannot be done, finish with the reason',
    ])
    expect(lastMessage(api.requests[1]!)).toContain('the model refused: "I cannot help with that."')
    const streamed = openaiModel({ model: 'm', baseURL: api.baseURL, apiKey, stream: true })
    expect(await streamed.complete(request())).toMatchObject({ text: '', refusal: 'I cannot help.' })
  })

  test('a malformed body is a clear error, not a crash', async () => {
    const api = await serve((_, index) => (index === 0 ? { raw: '{"choices": [' } : { json: { foo: 1 } }))
    const model = openaiModel({ model: 'm', baseURL: api.baseURL, apiKey, maxRetries: 0 })
    const notJson = await model.complete(request()).catch((e: unknown) => e)
    expect(notJson).toBeInstanceOf(ModelError)
    expect((notJson as Error).message).toMatch(/^model m: malformed response, the body is not JSON/)
    const noChoices = await model.complete(request()).catch((e: unknown) => e)
    expect((noChoices as Error).message).toBe(
      'model m: malformed response: expected a chat completion with choices[0].message, got {"foo":1}',
    )
    const empty = await serve(() => ({ sse: [] }))
    const streamed = openaiModel({ model: 's', baseURL: empty.baseURL, apiKey, stream: true })
    await expect(streamed.complete(request())).rejects.toThrow(
      /^model s: malformed response: the stream carried no choices$/,
    )
    // A stream's event that is not JSON is said to be one, not the body (which is a stream).
    const garbled = await serve(() => ({
      raw: `data: ${JSON.stringify({ choices: [{ index: 0, delta: { role: 'assistant' } }] })}\n\ndata: {not json\n\n`,
      contentType: 'text/event-stream',
    }))
    const garbledModel = openaiModel({
      model: 'g',
      baseURL: garbled.baseURL,
      apiKey,
      stream: true,
      maxRetries: 0,
    })
    await expect(garbledModel.complete(request())).rejects.toThrow(
      /^model g: malformed response, an event of the stream is not JSON: /,
    )
  })

  test('cancelling a run aborts the request in flight', async () => {
    const api = await serve(() => ({ json: completion({ content: 'never' }), delayMs: 5_000 }))
    const solo = defineAgent({ name: 'solo', instructions: 'Answer.' })
    const model = openaiModel({ model: 'm', baseURL: api.baseURL, apiKey })
    const run = createRuntime({ agents: [solo], model }).start('solo', 'wait')
    await new Promise((resolve) => setTimeout(resolve, 100))
    const started = performance.now()
    run.cancel()
    await expect(run.result).rejects.toThrow()
    expect(performance.now() - started).toBeLessThan(1_000)
  })

  test('a server that reports no usage: the calls count estimated tokens, in budgets, metrics and events', async () => {
    const api = await serve(() => ({
      json: completion(
        { content: 'x'.repeat(4_000), toolCalls: [{ name: 'lookup', arguments: { word: 'apple' } }] },
        null,
      ),
    }))
    const model = openaiModel({ model: 'm', baseURL: api.baseURL, apiKey })
    const reply = await model.complete(request())
    expect(reply.usageEstimated).toBe(true)
    expect(reply.usage!.promptTokens).toBeGreaterThan(10)
    expect(reply.usage!.completionTokens).toBeGreaterThanOrEqual(1_000)

    const thrifty = defineAgent({ ...worker, limits: { maxAgentTokens: 800 } })
    const run = createRuntime({ agents: [thrifty], model }).start('worker', 'look up apple')
    const completed: CohortEvent[] = []
    run.on('model.completed', (event) => completed.push(event))
    await expect(run.result).rejects.toThrow(/over its budget of 800 \(maxAgentTokens\)/)
    expect(completed).toMatchObject([{ usageEstimated: true }])
    expect(run.metrics().tokens.total).toBeGreaterThan(1_000)
  })

  test('prices give each call a cost, summed per run', async () => {
    const api = await serve(() => ({ json: completion({ content: '{"action":"finish","result":1}' }) }))
    const prices = { promptPerMillion: 0.27, completionPerMillion: 1.1 }
    const model = openaiModel({ model: 'deepseek-chat', baseURL: api.baseURL, apiKey, prices })
    const reply = await model.complete(request())
    expect(reply.cost).toBeCloseTo((100 * 0.27 + 20 * 1.1) / 1e6, 12)
    const solo = defineAgent({ name: 'solo', instructions: 'Answer.' })
    const run = createRuntime({ agents: [solo], model }).start('solo', 'x')
    await run.result
    expect(run.metrics().cost).toBeCloseTo((100 * 0.27 + 20 * 1.1) / 1e6, 12)
  })

  test('the API key never reaches logs, events or stored records, even when the server echoes it', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'cohort-openai-'))
    try {
      const api = await serve(() => ({
        json: completion({ content: `{"action":"finish","result":"my key is ${apiKey}"}` }),
      }))
      const solo = defineAgent({ name: 'solo', instructions: 'Answer.' })
      const model = openaiModel({ model: 'm', baseURL: api.baseURL, apiKey })
      const runtime = createRuntime({
        agents: [solo],
        model,
        store: fileStore(path.join(dir, 'runs')),
        logger: createLogger({ console: false, dir: path.join(dir, 'logs') }),
      })
      const run = runtime.start('solo', 'tell me the key')
      const events: CohortEvent[] = []
      run.on('event', (event) => events.push(event))
      expect(await run.result).toBe('my key is [redacted]')
      expect(api.requests[0]!.headers.authorization).toBe(`Bearer ${apiKey}`)
      expect(JSON.stringify(events)).not.toContain(apiKey)
      expect(JSON.stringify(await run.snapshot())).not.toContain(apiKey)
      await new Promise((resolve) => setTimeout(resolve, 200))
      const files = await readdir(dir, { recursive: true })
      expect(files.length).toBeGreaterThan(2)
      for (const file of files) {
        const text = await readFile(path.join(dir, file), 'utf8').catch(() => '')
        expect(text, file).not.toContain(apiKey)
      }
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  test('COHORT_DEBUG prints failed calls without the key the server echoed, in the error or its cause', async () => {
    const api = await serve((received) => ({
      json: {
        error: {
          message: `Incorrect API key provided: ${received.headers.authorization?.slice(7)}.`,
          type: 'invalid_request_error',
          code: 'invalid_api_key',
        },
      },
      status: 401,
    }))
    const solo = defineAgent({ name: 'solo', instructions: 'Answer.' })
    const model = openaiModel({ model: 'm', baseURL: api.baseURL, apiKey })
    const printed: string[] = []
    const spy = vi.spyOn(console, 'error').mockImplementation((...args: unknown[]) => {
      printed.push(args.map((arg) => inspect(arg, { depth: 10 })).join(' '))
    })
    process.env.COHORT_DEBUG = '1'
    try {
      const run = createRuntime({ agents: [solo], model }).start('solo', 'x')
      await expect(run.result).rejects.toThrow('Incorrect API key provided: [redacted].')
    } finally {
      delete process.env.COHORT_DEBUG
      spy.mockRestore()
    }
    expect(printed.join('\n')).toContain('Incorrect API key provided: [redacted].')
    expect(printed.join('\n')).not.toContain(apiKey)
  })

  test('a key the server echoes split over two streamed fragments is in no token event', async () => {
    const half = apiKey.length / 2
    const api = await serve(() => ({
      sse: streamChunks([
        '{"action":"finish","result":"key ',
        apiKey.slice(0, half),
        apiKey.slice(half),
        '"}',
      ]),
    }))
    const solo = defineAgent({ name: 'solo', instructions: 'Answer.' })
    const model = openaiModel({ model: 'm', baseURL: api.baseURL, apiKey, stream: true, protocol: 'text' })
    const run = createRuntime({ agents: [solo], model }).start('solo', 'tell me the key')
    const tokens: string[] = []
    run.on('model.token', (event) => tokens.push((event as { text: string }).text))
    expect(await run.result).toBe('key [redacted]')
    expect(tokens.join('')).toBe('{"action":"finish","result":"key [redacted]"}')
    expect(
      tokens.some((token) => apiKey.startsWith(token.slice(0, 8)) || token.includes(apiKey.slice(half))),
    ).toBe(false)
  })

  test('a placeholder key (OPENAI_API_KEY=ollama, `lm-studio`) is no secret: the word stays in tasks and results', async () => {
    const api = await serve((received) => ({
      json: completion({
        content: JSON.stringify({ action: 'finish', result: `${lastMessage(received)}: run "ollama pull"` }),
      }),
    }))
    const saved = process.env.OPENAI_API_KEY
    process.env.OPENAI_API_KEY = 'ollama'
    try {
      const solo = defineAgent({ name: 'solo', instructions: 'Answer.' })
      const local = openaiModel({ model: 'm', baseURL: api.baseURL, apiKey: 'lm-studio' })
      const runtime = createRuntime({ agents: [solo], model: local })
      const result = await runtime.run('solo', 'install ollama or lm-studio')
      expect(result).toBe('install ollama or lm-studio: run "ollama pull"')
      expect(api.requests[0]!.headers.authorization).toBe('Bearer lm-studio')
      // A secret the user names is hidden as given, a plain word too.
      const strict = createRuntime({ agents: [solo], model: local, secrets: ['ollama'] })
      expect(await strict.run('solo', 'ollama')).toBe('[redacted]: run "[redacted] pull"')
    } finally {
      if (saved === undefined) delete process.env.OPENAI_API_KEY
      else process.env.OPENAI_API_KEY = saved
    }
  })

  test('configuration errors are clear', () => {
    const saved = process.env.OPENAI_API_KEY
    delete process.env.OPENAI_API_KEY
    try {
      expect(() => openaiModel({ model: 'm' })).toThrow(
        /needs an API key: pass `apiKey` or set OPENAI_API_KEY \(any text for local servers\); it is not set$/,
      )
      // `OPENAI_API_KEY=` in a .env template: set, to nothing (spaces were sent as the key).
      for (const empty of ['', '  ']) {
        process.env.OPENAI_API_KEY = empty
        expect(() => openaiModel({ model: 'm' })).toThrow(/set OPENAI_API_KEY .*; it is set but empty$/)
      }
      // Given, but empty: said so, with OPENAI_API_KEY set or not.
      for (const key of [undefined, apiKey]) {
        if (key === undefined) delete process.env.OPENAI_API_KEY
        else process.env.OPENAI_API_KEY = key
        for (const empty of ['', '  ']) {
          expect(() => openaiModel({ model: 'm', apiKey: empty })).toThrow(
            /^openaiModel: the `apiKey` given is empty; expected the endpoint's key \(any text for local servers\), or leave `apiKey` out to use OPENAI_API_KEY$/,
          )
        }
      }
      delete process.env.OPENAI_API_KEY
      const offline = { name: 'offline', complete: async () => ({ text: '' }) }
      expect(modelFromEnv(offline)).toBe(offline)
      process.env.OPENAI_API_KEY = apiKey
      process.env.COHORT_MODEL = 'deepseek-chat'
      expect(modelFromEnv(offline).name).toBe('deepseek-chat')
    } finally {
      if (saved === undefined) delete process.env.OPENAI_API_KEY
      else process.env.OPENAI_API_KEY = saved
      delete process.env.COHORT_MODEL
    }
  })
})
