import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import {
  type ChatMessage,
  commandModel,
  createRuntime,
  defineAgent,
  defineTool,
  fileStore,
  InvalidInputError,
  ModelError,
  type ModelRequest,
  memoryStore,
  type RunStore,
  scriptedModel,
} from '@cohort/core'
import { afterEach, beforeEach, describe, expect, test } from 'vitest'
import { z } from 'zod'

let dir: string
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'cohort-continue-'))
})
afterEach(async () => {
  await rm(dir, { recursive: true, force: true })
})

const note = defineTool({
  name: 'note',
  description: 'Keep a note',
  parameters: z.object({ text: z.string() }),
  execute: async ({ text }) => ({ noted: text }),
})
const lead = defineAgent({ name: 'lead', instructions: 'You lead.', tools: [note] })

/** Each message as `role: content`, the system message as its role alone. */
const lines = (messages: readonly ChatMessage[]) =>
  messages.map((m) => (m.role === 'system' ? 'system' : `${m.role}: ${m.content}`))

/** A first session on `store`: the lead notes "prices", then finishes with a native call. */
async function firstSession(store: RunStore, runId = 'r1'): Promise<void> {
  const model = scriptedModel({
    lead: [
      { action: 'call_tool', tool: 'note', args: { text: 'prices' } },
      { text: '', toolCalls: [{ id: 'c1', name: 'finish', arguments: { result: 'EU prices noted' } }] },
    ],
  })
  await createRuntime({ agents: [lead], model, store }).run('lead', 'find the EU prices', { runId })
}

/** The first session's conversation as the continued root's model sees it, before its new task. */
const firstConversation = [
  'system',
  'user: find the EU prices',
  'assistant: {"action":"call_tool","tool":"note","args":{"text":"prices"}}',
  'user: [call_tool note] {"noted":"prices"}',
  'assistant: ',
  'tool: (no result: the earlier session ended here)',
]

/** A model that finishes with the conversation it was given. */
const echo = scriptedModel((request: ModelRequest) => ({ action: 'finish', result: lines(request.messages) }))

describe('continueFrom', () => {
  test("the new run's root sees the settled agent's conversation, then the new task; the old run is unchanged", async () => {
    const store = memoryStore()
    await firstSession(store)
    const before = await store.loadRun('r1')
    const runtime = createRuntime({ agents: [lead], model: echo, store })
    const run = runtime.start('lead', 'now the US prices', { runId: 'r2', continueFrom: 'r1' })
    expect(await run.result).toEqual([...firstConversation, 'user: now the US prices'])
    expect((await store.loadRunRecord!('r2'))?.continuedFrom).toEqual({ runId: 'r1', agentId: 'lead' })
    expect(await store.loadRun('r1')).toEqual(before)
    // The new root's system message is its own definition's, not a copy of the old record's.
    const root = (await store.loadRun('r2'))?.agents[0]?.snapshot.context
    expect(root?.messages[0]).toMatchObject({ role: 'system', content: expect.stringContaining('You lead.') })
    expect(root?.messages.filter((m) => m.role === 'system')).toHaveLength(1)

    // prepareRun writes the idle root with the history too, and refuses as start does.
    const prepared = await runtime.prepareRun('lead', 'the UK', { continueFrom: 'r1' })
    const idle = await store.loadAgent!(prepared.runId, 'lead')
    expect(lines(idle!.snapshot.context.messages)).toEqual([...firstConversation, 'user: the UK'])
    await expect(runtime.prepareRun('lead', 'x', { runId: 'n0', continueFrom: 'nope' })).rejects.toThrow(
      InvalidInputError,
    )
    expect(await store.loadRun('n0')).toBeUndefined()
  })

  test('a failed agent, and one that is not the root, can be continued', async () => {
    const store = memoryStore()
    const worker = defineAgent({ name: 'worker', instructions: '' })
    const boss = defineAgent({ name: 'boss', instructions: '', subagents: ['worker'] })
    const first = scriptedModel({
      boss: [
        { action: 'launch_subagents', agents: [{ agent: 'worker', task: 'count the files', id: 'w' }] },
        { action: 'wait_for_subagents' },
        { action: 'finish', result: 'gave up' },
      ],
      worker: () => {
        throw new ModelError('the model is down')
      },
    })
    await createRuntime({ agents: [boss, worker], model: first, store }).run('boss', 'go', { runId: 'f1' })
    expect((await store.loadAgent!('f1', 'boss.w'))?.status).toBe('failed')

    const runtime = createRuntime({ agents: [boss, worker], model: echo, store })
    const result = await runtime.run('worker', 'try again', {
      continueFrom: { runId: 'f1', agentId: 'boss.w' },
    })
    expect(result).toEqual(['system', 'user: count the files', 'user: try again'])
  })

  test('a source not stored, or not settled, is refused with what to do, and nothing is written', async () => {
    const store = memoryStore()
    await firstSession(store)
    const slow = scriptedModel({ lead: [{ action: 'finish', result: 'late' }] }, { latencyMs: 10_000 })
    const busy = createRuntime({ agents: [lead], model: slow, store })
    const live = busy.start('lead', 'take your time', { runId: 'live1' })
    await new Promise<void>((resolve) => live.on('model.started', () => resolve()))

    const runtime = createRuntime({ agents: [lead], model: echo, store })
    const refusals: [unknown, RegExp][] = [
      ['nope', /cannot continue run nope: it is not in the store/],
      [
        { runId: 'r1', agentId: 'lead.ghost' },
        /run r1's agent lead.ghost: the run has no such agent; its root is lead/,
      ],
      ['live1', /run live1's agent lead is still running: send it a message with run\.send instead/],
    ]
    for (const [continueFrom, message] of refusals) {
      const run = runtime.start('lead', 'more', { runId: 'n1', continueFrom } as never)
      const error = await run.result.catch((e: unknown) => e)
      expect(error).toBeInstanceOf(InvalidInputError)
      expect((error as Error).message).toMatch(message)
      expect(await store.loadRun('n1')).toBeUndefined()
    }
    await live.cancel()
  })

  test('a continueFrom of the wrong shape is refused at the call', () => {
    const runtime = createRuntime({ agents: [lead], model: echo })
    const bad: [unknown, RegExp][] = [
      [42, /continueFrom must be a run id or \{ runId, agentId\? \}/],
      ['no such id!', /invalid run id "no such id!"/],
      [{ runId: 'r1', agentId: 'lead..x' }, /invalid continueFrom.agentId "lead..x"/],
      [{ run: 'r1' }, /continueFrom takes runId and agentId only; got run too/],
      // Not 'invalid run id "undefined"'.
      [
        { agentId: 'lead' },
        /^continueFrom\.runId is missing: name the run to continue, such as \{ runId: "r1"/,
      ],
    ]
    for (const [continueFrom, message] of bad) {
      expect(() => runtime.start('lead', 'more', { continueFrom } as never)).toThrow(message)
      expect(() => runtime.start('lead', 'more', { continueFrom } as never)).toThrow(InvalidInputError)
    }
    expect(() =>
      runtime.runPlan({ agents: [{ id: 'a', agent: 'lead', task: 't' }] }, { continueFrom: 'r1' }),
    ).toThrow(/runPlan cannot continue a session/)
  })

  test("a process agent's workspace starts as a copy of the agent's it continues", async () => {
    const store = memoryStore()
    // Each turn appends its task to notes.txt and answers with the whole file.
    const coder = defineAgent({
      name: 'coder',
      instructions: '',
      model: commandModel({
        command: 'sh',
        args: ['-c', 'cat >> notes.txt; echo >> notes.txt; cat notes.txt'],
      }),
    })
    const runtime = createRuntime({ agents: [coder], store, workspaces: { root: path.join(dir, 'ws') } })
    expect(await runtime.run('coder', 'write the parser', { runId: 'p1' })).toBe('write the parser')
    const again = await runtime.run('coder', 'add tests', { runId: 'p2', continueFrom: 'p1' })
    expect(again).toBe('write the parser\nadd tests')
    // The first session's files are as it left them.
    expect(await runtime.run('coder', 'third', { runId: 'p3', continueFrom: 'p1' })).toBe(
      'write the parser\nthird',
    )
  })

  test('a continued run resumed after a crash, in a new runtime, ends as an uninterrupted one', async () => {
    const storeDir = path.join(dir, 'store')
    await firstSession(fileStore(storeDir))
    const slowEcho = scriptedModel(
      (request: ModelRequest) => ({ action: 'finish', result: lines(request.messages) }),
      { latencyMs: 200 },
    )
    const expected = [...firstConversation, 'user: and the US prices']
    const first = createRuntime({ agents: [lead], model: slowEcho, store: fileStore(storeDir) })
    const run = first.start('lead', 'and the US prices', { runId: 'c1', continueFrom: 'r1' })
    await new Promise<void>((resolve) => run.on('model.started', () => resolve()))
    await run.detach()
    // As a killed process leaves it: running, with no detach recorded.
    const store = fileStore(storeDir)
    const { detachedAt: _, ...crashed } = (await store.loadRunRecord('c1'))!
    await store.saveRun(crashed)
    // And one killed between its run record and its root's: the root is made again, continued.
    await store.saveRun({ ...crashed, id: 'c2' })

    for (const runId of ['c1', 'c2']) {
      const resumed = await createRuntime({
        agents: [lead],
        model: slowEcho,
        store: fileStore(storeDir),
      }).resume(runId)
      expect(await resumed.result).toEqual(expected)
      const stored = await fileStore(storeDir).loadRun(runId)
      expect(stored?.run.continuedFrom).toEqual({ runId: 'r1', agentId: 'lead' })
      expect(lines(stored!.agents[0]!.snapshot.context.messages).slice(0, expected.length)).toEqual(expected)
    }
  })
})
