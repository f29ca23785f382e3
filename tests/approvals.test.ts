import { startServer } from '@cohort/cli'
import {
  createRuntime,
  defineAgent,
  defineTool,
  memoryStore,
  type Run,
  type RunStore,
  scriptedModel,
} from '@cohort/core'
import { describe, expect, test } from 'vitest'
import { z } from 'zod'
import { twoAgentsOnCall0 } from './fixtures/call-0-approvals.js'
import { waitUntil } from './support/scripts.js'

/** What `GET /api/runs/:runId` answers, as far as these tests read it. */
interface RunView {
  run: { status: string; result?: unknown }
  agents: { id: string; awaiting?: { callId: string } }[]
}

/** An agent whose one tool asks a person `prompt`, then finishes; `got` is what each answer gave the tool. */
function askingAgent(prompt: string) {
  const got: unknown[] = []
  const ask = defineTool({
    name: 'ask',
    description: 'asks a person',
    parameters: z.object({}),
    execute: async (_args, ctx) => {
      got.push(await ctx.suspend(prompt))
      return 'answered'
    },
  })
  const asker = defineAgent({ name: 'asker', instructions: '', tools: [ask] })
  const model = scriptedModel({
    asker: [
      { action: 'call_tool', tool: 'ask', args: {} },
      { action: 'finish', result: 'done' },
    ],
  })
  return { asker, model, got }
}

/** The agents of a run that wait for approval, with the call each waits on. */
async function awaitingApproval(run: Run): Promise<[string, string][]> {
  const { agents } = await run.snapshot()
  return agents.flatMap((agent) => {
    const { awaiting } = agent.snapshot.context
    return agent.status === 'suspended' && awaiting?.kind === 'approval' ? [[agent.id, awaiting.callId]] : []
  })
}

describe('run.approve cannot tell two agents apart (issue 23, item 5)', () => {
  test('two agents waiting on the same native call id are approved and rejected one at a time', async () => {
    const { runtime, deployed } = twoAgentsOnCall0()
    const run = runtime.start('lead', 'ship both')
    await new Promise<void>((resolve) => {
      const waiting = new Set<string>()
      run.on('agent.suspended', (event) => {
        if (event.awaiting) waiting.add(event.agentId)
        if (waiting.size === 2) resolve()
      })
    })
    expect(await awaitingApproval(run)).toEqual([
      ['lead.api', 'call_0'],
      ['lead.db', 'call_0'],
    ])

    const dbDone = new Promise<void>((resolve) =>
      run.on('agent.completed', (event) => event.agentId === 'lead.db' && resolve()),
    )
    run.approve('lead.db', 'call_0')
    await dbDone
    // Only the agent named ran its call; the other still waits on its own call_0.
    expect(deployed).toEqual(['db'])
    expect(await awaitingApproval(run)).toEqual([['lead.api', 'call_0']])
    expect(() => run.approve('lead.db', 'call_0')).toThrow(/agent lead\.db has already completed/)
    expect(() => run.approve('lead.api', 'call_1')).toThrow(
      /agent lead\.api of run \S+ is not waiting for approval of call "call_1" \(it waits for approval of call "call_0"\)/,
    )
    // The lead is suspended too, but on its sub-agents: it is not said to be "suspended".
    expect(() => run.approve('lead', 'call_0')).toThrow(
      /agent lead of run \S+ is not waiting for approval of call "call_0" \(it waits for its sub-agents\)$/,
    )
    // A call id alone, as approve took before it named the agent, is refused rather than guessed.
    expect(() => (run.approve as unknown as (callId: string) => void)('call_0')).toThrow(
      /callId must be a non-empty string, got undefined: approve and reject take \(agentId, callId\)/,
    )
    expect(await awaitingApproval(run)).toEqual([['lead.api', 'call_0']])

    run.reject('lead.api', 'call_0', 'not on a Friday')
    expect(await run.result).toEqual(['rejected: not on a Friday', 'deployed db'])
    expect(deployed).toEqual(['db'])
  })

  test('a cancelled run refuses an approval, saying it was cancelled', async () => {
    const { runtime, deployed } = twoAgentsOnCall0()
    const run = runtime.start('lead', 'ship both')
    await new Promise<void>((resolve) => run.on('agent.suspended', (event) => event.awaiting && resolve()))
    await run.cancel()
    await run.result.catch(() => {})
    expect(() => run.approve('lead.db', 'call_0')).toThrow(/^run \S+ has already been cancelled$/)
    await expect(runtime.answer(run.id, 'lead.db', { approve: 'call_0' })).rejects.toThrow(
      /^run \S+ has already been cancelled$/,
    )
    expect(deployed).toEqual([])
  })

  test('a detached run refuses an approval or a message, which would be lost, and says to resume it', async () => {
    const { runtime, deployed } = twoAgentsOnCall0()
    const run = runtime.start('lead', 'ship both')
    await new Promise<void>((resolve) => run.on('agent.suspended', (event) => event.awaiting && resolve()))
    await run.detach()
    const resume = /was detached in this process: resume it \(runtime\.resume\) to reach agent lead\.db/
    expect(() => run.approve('lead.db', 'call_0')).toThrow(resume)
    expect(() => run.send('lead.db', 'hello')).toThrow(resume)
    expect(deployed).toEqual([])
    // Resumed, the same approval goes through.
    const resumed = await runtime.resume(run.id)
    await waitUntil(async () => (await awaitingApproval(resumed)).length === 2)
    resumed.approve('lead.db', 'call_0')
    await waitUntil(() => deployed.length === 1)
    expect(deployed).toEqual(['db'])
    await resumed.cancel()
  })

  test('over HTTP, the approve and reject routes name the agent', async () => {
    const { runtime, deployed } = twoAgentsOnCall0()
    const server = await startServer({ runtime, root: 'lead', port: 0 })
    const call = async (method: string, path: string, body?: unknown) => {
      const response = await fetch(new URL(path, server.url), {
        method,
        headers: {
          authorization: `Bearer ${server.token}`,
          ...(body !== undefined && { 'content-type': 'application/json' }),
        },
        ...(body !== undefined && { body: JSON.stringify(body) }),
      })
      return { status: response.status, body: (await response.json()) as unknown }
    }
    try {
      await call('POST', 'api/runs', { task: 'ship both', runId: 'both' })
      const waiting = async () =>
        ((await call('GET', 'api/runs/both')).body as RunView).agents.flatMap((agent) =>
          agent.awaiting ? [[agent.id, agent.awaiting.callId]] : [],
        )
      await waitUntil(async () => (await waiting()).length === 2)
      expect(await waiting()).toEqual([
        ['lead.api', 'call_0'],
        ['lead.db', 'call_0'],
      ])

      // The route before agents were named is gone, not guessing.
      expect((await call('POST', 'api/runs/both/approve', { callId: 'call_0' })).status).toBe(404)
      expect(await call('POST', 'api/runs/both/agents/lead.db/approve', {})).toEqual({
        status: 400,
        body: { error: expect.stringMatching(/callId/) },
      })
      expect(await call('POST', 'api/runs/both/agents/lead.db/approve', { callId: 'call_0' })).toEqual({
        status: 202,
        body: { runId: 'both', agentId: 'lead.db', approved: 'call_0' },
      })
      await waitUntil(async () => (await waiting()).length === 1)
      expect(await waiting()).toEqual([['lead.api', 'call_0']])
      expect(deployed).toEqual(['db'])

      const rejected = await call('POST', 'api/runs/both/agents/lead.api/reject', {
        callId: 'call_0',
        reason: 'not on a Friday',
      })
      expect(rejected).toEqual({
        status: 202,
        body: { runId: 'both', agentId: 'lead.api', rejected: 'call_0' },
      })
      await waitUntil(
        async () => ((await call('GET', 'api/runs/both')).body as RunView).run.status === 'completed',
      )
      expect(((await call('GET', 'api/runs/both')).body as RunView).run.result).toEqual([
        'rejected: not on a Friday',
        'deployed db',
      ])
      expect(deployed).toEqual(['db'])
    } finally {
      await server.close()
    }
  })
})

test('an answer no record could hold (nested too deep, or a cycle) is refused, in process and over HTTP, and the agent still waits', async () => {
  const ask = defineTool({
    name: 'ask',
    description: 'asks a person',
    parameters: z.object({}),
    execute: (_args, ctx) => ctx.suspend('which region?'),
  })
  const asker = defineAgent({ name: 'asker', instructions: '', tools: [ask] })
  const model = scriptedModel({
    asker: [
      { action: 'call_tool', tool: 'ask', args: {} },
      (request) => ({ action: 'finish', result: request.messages.at(-1)?.content }),
    ],
  })
  const runtime = createRuntime({ agents: [asker], model })
  const server = await startServer({ runtime, root: 'asker', port: 0 })
  try {
    const run = runtime.start('asker', 'go', { runId: 'deep' })
    await new Promise<void>((resolve) => run.on('agent.suspended', () => resolve()))
    const deep = JSON.parse(`${'['.repeat(3000)}${']'.repeat(3000)}`)
    const cyclic: Record<string, unknown> = { region: 'eu' }
    cyclic.self = cyclic
    const inMap = new Map([['k', deep]])
    const inSet = new Set([deep])
    for (const payload of [deep, cyclic, inMap, inSet]) {
      expect(() => run.resume('asker', payload)).toThrow(/nested deeper than 500 levels, or refers to itself/)
    }
    const response = await fetch(new URL('api/runs/deep/agents/asker/resume', server.url), {
      method: 'POST',
      headers: { authorization: `Bearer ${server.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ payload: deep }),
    })
    expect(response.status).toBe(400)
    expect(((await response.json()) as { error: string }).error).toMatch(/nested deeper than 500 levels/)
    expect((await run.snapshot()).agents[0]).toMatchObject({ status: 'suspended' })

    run.resume('asker', { region: 'eu-west' })
    expect(await run.result).toMatch(/eu-west/)
  } finally {
    await server.close()
  }
})

test('an answer holding what a store cannot keep (a function, a symbol, a class instance) is refused, naming where; one superjson keeps reads back the same after a resume', async () => {
  const { asker, model, got } = askingAgent('which region?')
  const store = memoryStore()
  const runtime = createRuntime({ agents: [asker], model, store })
  class Region {
    constructor(readonly name: string) {}
  }
  const refused: [unknown, RegExp][] = [
    [{ pick: () => 'eu' }, /the answer to agent asker holds a function at \.pick/],
    [{ tags: [1, Symbol('eu')] }, /holds a symbol at \.tags\[1\]/],
    [{ region: new Region('eu') }, /holds an instance of class Region at \.region/],
    [new Map([['k', { at: new Region('eu') }]]), /holds an instance of class Region at a value of the map/],
    [{ [Symbol('key')]: 1 }, /holds a symbol key at \(root\)/],
    [
      { options: { constructor: { at: new Date(0) } } },
      /holds a key "constructor" holding a value JSON cannot at \.options/,
    ],
  ]
  const live = runtime.start('asker', 'go', { runId: 'live' })
  await new Promise<void>((resolve) => live.on('agent.suspended', () => resolve()))
  for (const [payload, message] of refused) expect(() => live.resume('asker', payload)).toThrow(message)
  await live.detach()
  for (const [payload, message] of refused)
    await expect(runtime.answer('live', 'asker', { payload })).rejects.toThrow(message)
  // The agent still waits, and takes an answer a store keeps, read back as it was given.
  const rich = {
    at: new Date(Date.UTC(2024, 0, 2)),
    seen: new Map([['eu', new Set([1n, 2n])]]),
    pattern: /eu-\w+/g,
    gone: undefined,
    list: [undefined, { deep: [new Date(0)] }],
    failure: new Error('no capacity'),
  }
  await runtime.answer('live', 'asker', { payload: rich })
  expect(await (await createRuntime({ agents: [asker], model, store }).resume('live')).result).toBe('done')
  // An Error reads back as superjson keeps it: its name and message (not its own properties).
  const { failure, ...rest } = got[0] as typeof rich
  const { failure: _given, ...expected } = rich
  expect(rest).toEqual(expected)
  expect(Object.keys(rest)).toEqual(Object.keys(expected))
  expect(failure).toBeInstanceOf(Error)
  expect(failure.message).toBe('no capacity')
})

test('an answer given no payload is null, and the run reads back from the store; an answer that is no answer is refused', async () => {
  const { asker, model, got } = askingAgent('continue?')
  const store = memoryStore()
  const runtime = createRuntime({ agents: [asker], model, store })
  const live = runtime.start('asker', 'go', { runId: 'live' })
  await new Promise<void>((resolve) => live.on('agent.suspended', () => resolve()))
  live.resume('asker')
  expect(await live.result).toBe('done')
  expect(got).toEqual([null])
  expect((await store.loadRun('live'))?.agents[0]?.status).toBe('completed')

  // Answered in the store (a distributed host), with no payload, then resumed.
  const stored = runtime.start('asker', 'go', { runId: 'stored' })
  await new Promise<void>((resolve) => stored.on('agent.suspended', () => resolve()))
  await stored.detach()
  for (const bad of [null, 'yes', []]) {
    await expect(runtime.answer('stored', 'asker', bad as never)).rejects.toThrow(/an answer must be/)
  }
  await runtime.answer('stored', 'asker', {} as never)
  expect(await (await runtime.resume('stored')).result).toBe('done')
  expect(got).toEqual([null, null])
})

describe('a message from outside is acknowledged once it is stored', () => {
  /** An asker suspended for input, on a store that holds back (`gate`) or fails (`failure`) the writes of a record holding "note". */
  async function askerWaiting() {
    const ask = defineTool({
      name: 'ask',
      description: 'asks a person',
      parameters: z.object({}),
      execute: async (_args, ctx) => ctx.suspend('continue?'),
    })
    const asker = defineAgent({ name: 'asker', instructions: '', tools: [ask] })
    const model = scriptedModel({ asker: [{ action: 'call_tool', tool: 'ask', args: {} }] })
    const base = memoryStore()
    const held = { gate: Promise.resolve(), failure: undefined as Error | undefined, every: false }
    const store: RunStore = Object.create(base)
    store.saveAgent = async (runId, record, storedMessages) => {
      if (held.every || record.snapshot.context.inbox.some((message) => message.text === 'note')) {
        await held.gate
        if (held.failure) throw held.failure
      }
      await base.saveAgent(runId, record, storedMessages)
    }
    const runtime = createRuntime({ agents: [asker], model, store })
    const suspended = new Promise<void>((resolve) => runtime.on('agent.suspended', () => resolve()))
    return { runtime, base, held, suspended }
  }
  const storedInbox = async (store: RunStore, runId: string) =>
    (await store.loadRun(runId))?.agents[0]?.snapshot.context.inbox

  test('run.send resolves once the record holding the message is stored, and rejects with the store failure', async () => {
    const { runtime, base, held, suspended } = await askerWaiting()
    const run = runtime.start('asker', 'go', { runId: 'sent' })
    await suspended
    let open = () => {}
    held.gate = new Promise((resolve) => {
      open = resolve
    })
    let stored = false
    const sent = Promise.resolve(run.send('asker', 'note')).then(() => {
      stored = true
    })
    await new Promise((resolve) => setTimeout(resolve, 30))
    expect(stored).toBe(false)
    expect(await storedInbox(base, 'sent')).toEqual([])
    open()
    await sent
    expect(await storedInbox(base, 'sent')).toEqual([{ from: 'user', text: 'note' }])

    held.failure = new Error('disk full')
    // Not waited for, as send was called when it returned nothing: no unhandled rejection.
    void run.send('asker', 'note')
    await expect(run.send('asker', 'note')).rejects.toThrow(
      /store write of agent asker \(run sent\) failed: disk full/,
    )
    await run.result.catch(() => {})
  })

  test('an answer (run.resume), like an approval or a refusal, resolves once it is stored', async () => {
    const { runtime, base, held, suspended } = await askerWaiting()
    const run = runtime.start('asker', 'go', { runId: 'answered' })
    await suspended
    let open = () => {}
    held.every = true
    held.gate = new Promise((resolve) => {
      open = resolve
    })
    let stored = false
    const answered = run.resume('asker', 'yes').then(() => {
      stored = true
    })
    await new Promise((resolve) => setTimeout(resolve, 30))
    expect(stored).toBe(false)
    expect((await base.loadRun('answered'))?.agents[0]?.snapshot.context.answers).toEqual({})
    open()
    await answered
    expect((await base.loadRun('answered'))?.agents[0]?.snapshot.context.answers).toMatchObject({
      '0.0': { payload: 'yes' },
    })
    await run.cancel()
  })

  test('over HTTP, 202 comes once the message is stored; a store failure is a 500 that says so', async () => {
    const { runtime, base, held, suspended } = await askerWaiting()
    const server = await startServer({ runtime, root: 'asker', port: 0 })
    const post = async (path: string, body: unknown) => {
      const response = await fetch(new URL(path, server.url), {
        method: 'POST',
        headers: { authorization: `Bearer ${server.token}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      })
      return { status: response.status, body: (await response.json()) as unknown }
    }
    let open = () => {}
    try {
      await post('api/runs', { task: 'go', runId: 'http' })
      await suspended
      held.gate = new Promise((resolve) => {
        open = resolve
      })
      let answered = false
      const sent = post('api/runs/http/agents/asker/messages', { text: 'note' }).finally(() => {
        answered = true
      })
      await new Promise((resolve) => setTimeout(resolve, 30))
      expect(answered).toBe(false)
      open()
      expect(await sent).toEqual({ status: 202, body: { runId: 'http', agentId: 'asker' } })
      expect(await storedInbox(base, 'http')).toEqual([{ from: 'user', text: 'note' }])

      held.failure = new Error('disk full')
      expect(await post('api/runs/http/agents/asker/messages', { text: 'note' })).toEqual({
        status: 500,
        body: { error: expect.stringMatching(/store write of agent asker \(run http\) failed: disk full/) },
      })
    } finally {
      open()
      await server.close()
    }
  })
})
