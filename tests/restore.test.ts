import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import {
  type AgentRecord,
  type AnyTool,
  createRuntime,
  defineAgent,
  defineTool,
  fileStore,
  historyChunkSize,
  InvalidInputError,
  type ModelRequest,
  memoryStore,
  RunNotFoundError,
  type RunStore,
  runWallMs,
  type Script,
  type ScriptedModelOptions,
  SnapshotError,
  scriptedModel,
  settledChildren,
  sleep,
  type ToolContext,
} from '@cohort/core'
import { afterEach, beforeEach, describe, expect, test } from 'vitest'
import { z } from 'zod'
import { model, scenarioRuntime } from './fixtures/scenario.js'
import { collect, resultLine, spawnTs } from './support/processes.js'

let dir: string
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'cohort-restore-'))
})
afterEach(async () => {
  await rm(dir, { recursive: true, force: true })
})

describe('restore', () => {
  test('a run SIGKILLed while the lead is suspended ends, in a new process, as an uninterrupted run', async () => {
    const uninterrupted = await scenarioRuntime(path.join(dir, 'clean')).run('lead', 'report on two sleeps')

    const storeDir = path.join(dir, 'crashed')
    const first = spawnTs('tests/fixtures/run-scenario.ts', ['start', storeDir, 'crash-1'])
    let killedAt = ''
    const firstDone = collect(first, (line) => {
      // The quick worker finishing comes well after the lead suspended (and was written).
      if (line === 'event tool.completed lead.quick' && !killedAt) {
        killedAt = line
        first.kill('SIGKILL')
      }
    })
    const crashed = await firstDone
    expect(crashed.signal).toBe('SIGKILL')
    expect(crashed.stdout).not.toMatch(/^result /m)

    const stored = await fileStore(storeDir).loadRun('crash-1')
    expect(stored?.run.status).toBe('running')
    expect(stored?.agents.find((a) => a.id === 'lead')?.status).toBe('suspended')

    const second = await collect(spawnTs('tests/fixtures/run-scenario.ts', ['resume', storeDir, 'crash-1']))
    expect(second.code, second.stderr).toBe(0)
    expect(resultLine(second.stdout)).toEqual(uninterrupted)
    expect(second.stdout).toMatch(/event run.resumed/)

    const after = await fileStore(storeDir).loadRun('crash-1')
    expect(after?.run).toMatchObject({ status: 'completed', result: uninterrupted })
    expect(after?.agents.map((a) => a.status)).toEqual(['completed', 'completed', 'completed'])
  })

  test('a suspended parent whose children settled while it was down resumes at once', async () => {
    const storeDir = path.join(dir, 'settled')
    const child = spawnTs('tests/fixtures/run-scenario.ts', ['start', storeDir, 'settled-1'])
    // Kill right after the slow worker completes but before the lead can record its resumption.
    const done = collect(child, (line) => {
      if (line === 'event agent.completed lead.slow') child.kill('SIGKILL')
    })
    await done
    const before = await fileStore(storeDir).loadRun('settled-1')
    const statuses = Object.fromEntries(before!.agents.map((a) => [a.id, a.status]))
    // The lead's record still says suspended; the last worker may or may not have been written as done.
    expect(statuses.lead).toBe('suspended')
    expect(statuses['lead.quick']).toBe('completed')
    const runtime = scenarioRuntime(storeDir)
    const run = await runtime.resume('settled-1')
    expect(await run.result).toEqual({ summary: ['quick:slept 0.2s', 'slow:slept 0.8s'] })
  })

  test('resume in the same process continues a run from the store', async () => {
    const store = memoryStore()
    const worker = defineAgent({ name: 'worker', instructions: '' })
    const lead = defineAgent({ name: 'lead', instructions: '', subagents: [worker] })
    const first = createRuntime({ agents: [lead, worker], model, store })
    const run = first.start('lead', 'x', { runId: 'same-process' })
    expect(await first.resume('same-process')).toBe(run)
    const result = await run.result
    const again = await createRuntime({ agents: [lead, worker], model, store }).resume('same-process')
    expect(await again.result).toEqual(result)
  })

  test('run ids that are not plain ids are refused', async () => {
    const runtime = scenarioRuntime(dir)
    await expect(runtime.resume('../x')).rejects.toBeInstanceOf(InvalidInputError)
    expect(() => runtime.start('lead', 'x', { runId: 'a/b' })).toThrow(InvalidInputError)
    await expect(runtime.resume('missing')).rejects.toThrow(/run missing is not in the store/)
  })

  test('a run the store does not hold is a RunNotFoundError naming it, to resume or to answer', async () => {
    const runtime = scenarioRuntime(dir)
    const missing = { code: 'RUN_NOT_FOUND', runId: 'missing', message: 'run missing is not in the store' }
    const resumed = await runtime.resume('missing').catch((e: unknown) => e)
    expect(resumed).toBeInstanceOf(RunNotFoundError)
    expect(resumed).toMatchObject(missing)
    const answered = await runtime.answer('missing', 'lead', { payload: 1 }).catch((e: unknown) => e)
    expect(answered).toBeInstanceOf(RunNotFoundError)
    expect(answered).toMatchObject(missing)
  })

  test('a corrupted or foreign record is a SnapshotError naming the file and field', async () => {
    const runtime = scenarioRuntime(dir)
    await runtime.run('lead', 'go', { runId: 'good' })
    const agentsDir = path.join(dir, 'good', 'agents')
    const leadFile = path.join(agentsDir, 'lead.json')
    const original = await readFile(leadFile, 'utf8')

    const record = JSON.parse(original)
    record.snapshot.context.messages = 'not a list'
    await writeFile(leadFile, JSON.stringify(record))
    const error = await runtime.resume('good').catch((e: unknown) => e)
    expect(error).toBeInstanceOf(SnapshotError)
    expect((error as SnapshotError).message).toContain(leadFile)
    expect((error as SnapshotError).field).toBe('snapshot.context.messages')

    await writeFile(leadFile, original.slice(0, original.length / 2))
    await expect(runtime.resume('good')).rejects.toThrow(/lead\.json: not a readable record/)

    await writeFile(leadFile, JSON.stringify({ json: { hello: 'world' } }))
    await expect(runtime.resume('good')).rejects.toThrow(/field "version"/)

    // A state the agent machine does not have: refused when the machine resolves it.
    const lost = JSON.parse(original)
    lost.snapshot.value = { running: 'daydreaming' }
    await writeFile(leadFile, JSON.stringify(lost))
    const unknownState = await runtime.resume('good').catch((e: unknown) => e)
    expect(unknownState).toBeInstanceOf(SnapshotError)
    expect((unknownState as SnapshotError).field).toBe('snapshot')
    expect((unknownState as SnapshotError).message).toMatch(/cannot restore the agent machine: .*daydreaming/)

    // Who the agent is, said again in its context, must be what the record says: it would act,
    // and be written back, as its context says (another run, a path for its workspace).
    for (const [field, value] of [
      ['agentId', '../../escaped'],
      ['runId', 'other'],
      ['name', 'worker'],
    ]) {
      const foreign = JSON.parse(original)
      foreign.snapshot.context[field!] = value
      await writeFile(leadFile, JSON.stringify(foreign))
      const refused = await runtime.resume('good').catch((e: unknown) => e)
      expect(refused, field).toBeInstanceOf(SnapshotError)
      expect((refused as SnapshotError).field).toBe(`snapshot.context.${field}`)
    }
    // An agent file renamed by hand holds another agent's record.
    await writeFile(leadFile, original)
    const quick = path.join(agentsDir, 'lead.quick.json')
    const quickText = await readFile(quick, 'utf8')
    await writeFile(quick, original)
    await expect(runtime.resume('good')).rejects.toThrow(
      /lead\.quick\.json: field "id": "lead"; expected the agent its file is named for/,
    )
    await writeFile(quick, quickText)

    // A child its parent lists, whose record the store lost: not run on as a failed child.
    await rm(quick)
    const missing = await runtime.resume('good').catch((e: unknown) => e)
    expect(missing).toBeInstanceOf(SnapshotError)
    expect((missing as SnapshotError).message).toMatch(
      /agent "lead" lists child "lead\.quick", which has no record/,
    )
    await writeFile(quick, quickText)
    // Records that name agents the run does not have: a parent, a child waited on.
    const orphan = JSON.parse(quickText)
    orphan.parentId = 'ghost'
    orphan.snapshot.context.parentId = 'ghost'
    await writeFile(quick, JSON.stringify(orphan))
    await expect(runtime.resume('good')).rejects.toThrow(
      /agent "lead\.quick" names parent "ghost", which has no record/,
    )
    await writeFile(quick, quickText)
    const waiting = JSON.parse(original)
    waiting.snapshot.context.waitingOn = ['quick', 'zz']
    await writeFile(leadFile, JSON.stringify(waiting))
    await expect(runtime.resume('good')).rejects.toThrow(
      /agent "lead" waits on "zz", which is none of its children/,
    )
    await writeFile(leadFile, original)

    // Nothing was rewritten by the failed attempts.
    expect((await readdir(agentsDir)).sort()).toEqual(['lead.json', 'lead.quick.json', 'lead.slow.json'])
  })
})

test('a run detached mid-step (a server shutting down) resumes in another runtime to the same result', async () => {
  const uninterrupted = await scenarioRuntime(path.join(dir, 'clean')).run('lead', 'report on two sleeps')
  const storeDir = path.join(dir, 'detached')
  const first = scenarioRuntime(storeDir)
  const run = first.start('lead', 'report on two sleeps', { runId: 'detach-1' })
  // Right as the lead suspends, writes of the children's first steps are still queued.
  await new Promise<void>((resolve) => run.on('agent.suspended', () => resolve()))
  await first.shutdown()
  await expect(run.result).rejects.toMatchObject({ code: 'DETACHED' })
  expect(first.active()).toHaveLength(0)
  // A runtime shut down starts and resumes nothing: a run would otherwise go on past the shutdown.
  expect(() => first.start('lead', 'one more')).toThrow(/this runtime was shut down/)
  await expect(first.resume('detach-1')).rejects.toMatchObject({ code: 'SHUT_DOWN' })
  expect(first.active()).toHaveLength(0)
  const stored = await first.store.loadRun('detach-1')
  expect(stored?.run.status).toBe('running')
  expect(stored?.agents.map((agent) => agent.snapshot.status)).toEqual(['active', 'active', 'active'])

  const resumed = await scenarioRuntime(storeDir).resume('detach-1')
  expect(await resumed.result).toEqual(uninterrupted)
})

test('a cancel cut off by a shutdown ends the run cancelled when it is resumed, not failed', async () => {
  const storeDir = path.join(dir, 'cancel-shutdown')
  const first = scenarioRuntime(storeDir)
  const run = first.start('lead', 'report on two sleeps', { runId: 'cancel-1' })
  await new Promise<void>((resolve) => run.on('agent.suspended', () => resolve()))
  // The user's cancel (over HTTP, say), then SIGTERM before the run's record says cancelled.
  const cancelling = run.cancel('the user asked')
  await first.shutdown()
  await cancelling
  expect((await first.store.loadRun('cancel-1'))?.run.status).toBe('running')

  const resumed = await scenarioRuntime(storeDir).resume('cancel-1')
  await expect(resumed.result).rejects.toMatchObject({
    code: 'CANCELLED',
    message: expect.stringMatching(/the user asked/),
  })
  expect((await first.store.loadRun('cancel-1'))?.run.status).toBe('cancelled')
})

test('a run detached as soon as it is started is stored, and runs only when resumed', async () => {
  let calls = 0
  const runtime = () =>
    createRuntime({
      agents: [defineAgent({ name: 'solo' })],
      model: scriptedModel({
        solo: () => {
          calls++
          return { action: 'finish', result: 'done' }
        },
      }),
      store: fileStore(dir),
    })
  const run = runtime().start('solo', 'go', { runId: 'early-detach' })
  await run.detach()
  await expect(run.result).rejects.toMatchObject({ code: 'DETACHED' })
  expect(calls).toBe(0)
  const stored = await fileStore(dir).loadRun('early-detach')
  expect(stored?.run.status).toBe('running')
  expect(stored?.agents.map((agent) => agent.status)).toEqual(['idle'])

  expect(await (await runtime().resume('early-detach')).result).toBe('done')
  expect(calls).toBe(1)
})

test('a resume called while its run is still detaching waits for the detach, then resumes it from the store', async () => {
  const uninterrupted = await scenarioRuntime(path.join(dir, 'clean')).run('lead', 'report on two sleeps')
  const runtime = scenarioRuntime(dir)
  const run = runtime.start('lead', 'report on two sleeps', { runId: 'redo' })
  await new Promise<void>((resolve) => run.on('agent.suspended', () => resolve()))
  const detaching = run.detach()
  const resumed = await runtime.resume('redo')
  await detaching
  await expect(run.result).rejects.toMatchObject({ code: 'DETACHED' })
  expect(resumed).not.toBe(run)
  expect(runtime.get('redo')).toBe(resumed)
  expect(await resumed.result).toEqual(uninterrupted)
})

test("a run record stored under another run's id (a copied folder) is a SnapshotError, and the other run is left as it was", async () => {
  const runtime = scenarioRuntime(dir)
  const run = runtime.start('lead', 'report on two sleeps', { runId: 'original' })
  await run.detach()
  const original = await readFile(path.join(dir, 'original', 'run.json'), 'utf8')
  // A copy of the folder with no agents yet: resuming it would start the root again, under the original's id.
  await mkdir(path.join(dir, 'copy', 'agents'), { recursive: true })
  await writeFile(path.join(dir, 'copy', 'run.json'), original)

  const error = await scenarioRuntime(dir)
    .resume('copy')
    .catch((e: unknown) => e)
  expect(error).toBeInstanceOf(SnapshotError)
  expect((error as SnapshotError).field).toBe('id')
  expect((error as SnapshotError).message).toMatch(
    /"original"; expected "copy", the run its folder is named for/,
  )
  // Listed once, as the run it is: the copy is not a second "original".
  expect((await fileStore(dir).listRuns()).map((record) => record.id)).toEqual(['original'])
  await new Promise((resolve) => setTimeout(resolve, 20))
  expect(await readFile(path.join(dir, 'original', 'run.json'), 'utf8')).toBe(original)
  expect(await readdir(path.join(dir, 'copy', 'agents'))).toEqual([])
})

test("a running run whose root agent's record is gone, its children's still there, is a SnapshotError", async () => {
  const runtime = scenarioRuntime(dir)
  const run = runtime.start('lead', 'report on two sleeps', { runId: 'rootless' })
  await new Promise<void>((resolve) => run.on('agent.suspended', () => resolve()))
  await run.detach()
  const agentsDir = path.join(dir, 'rootless', 'agents')
  await rm(path.join(agentsDir, 'lead.json'))
  const children = await Promise.all(
    ['lead.quick.json', 'lead.slow.json'].map((f) => readFile(path.join(agentsDir, f), 'utf8')),
  )

  // Starting the root again would wait forever on children it never launched.
  const error = await scenarioRuntime(dir)
    .resume('rootless')
    .catch((e: unknown) => e)
  expect(error).toBeInstanceOf(SnapshotError)
  expect((error as SnapshotError).field).toBe('rootAgentId')
  expect((error as SnapshotError).message).toMatch(/root agent "lead" has no record/)
  expect(
    await Promise.all(
      ['lead.quick.json', 'lead.slow.json'].map((f) => readFile(path.join(agentsDir, f), 'utf8')),
    ),
  ).toEqual(children)
})

test("a run whose run record is gone, its agents' still there, is a SnapshotError; a new run is not started over them", async () => {
  const runtime = scenarioRuntime(dir)
  const run = runtime.start('lead', 'report on two sleeps', { runId: 'recordless' })
  await new Promise<void>((resolve) => run.on('agent.suspended', () => resolve()))
  await run.detach()
  const agentsDir = path.join(dir, 'recordless', 'agents')
  await rm(path.join(dir, 'recordless', 'run.json'))
  const files = (await readdir(agentsDir)).sort()
  const texts = await Promise.all(files.map((f) => readFile(path.join(agentsDir, f), 'utf8')))

  const missing =
    /recordless.run\.json: the run record is missing, and the run's folder holds its agents' records/
  const resumed = await scenarioRuntime(dir)
    .resume('recordless')
    .catch((e: unknown) => e)
  expect(resumed).toBeInstanceOf(SnapshotError)
  expect((resumed as SnapshotError).message).toMatch(missing)
  await expect(fileStore(dir).loadRun('recordless')).rejects.toThrow(missing)
  // A start with its id would write a new root over the old one, among the old children.
  const started = scenarioRuntime(dir).start('lead', 'another task', { runId: 'recordless' })
  await expect(started.result).rejects.toThrow(/run recordless already exists in the store/)
  expect((await readdir(agentsDir)).sort()).toEqual(files)
  expect(await Promise.all(files.map((f) => readFile(path.join(agentsDir, f), 'utf8')))).toEqual(texts)
  await expect(readFile(path.join(dir, 'recordless', 'run.json'))).rejects.toThrow(/ENOENT/)
})

test('a run resumed where an agent calls a tool its definition no longer has is refused, and resumes once the tool is back', async () => {
  const slow = defineTool({
    name: 'slow',
    description: 'Takes a while',
    parameters: z.object({}),
    execute: (_args, ctx) =>
      new Promise((resolve) => setTimeout(() => resolve('slow done'), 50)).then((value) =>
        ctx.signal.aborted ? undefined : value,
      ),
  })
  const runtime = (tools: (typeof slow)[]) =>
    createRuntime({
      agents: [defineAgent({ name: 'solo', tools })],
      model: scriptedModel({
        solo: [
          { action: 'call_tool', tool: 'slow', args: {} },
          (request) => ({ action: 'finish', result: request.messages.at(-1)!.content }),
        ],
      }),
      store: fileStore(dir),
    })
  const run = runtime([slow]).start('solo', 'go', { runId: 'tool-gone' })
  await new Promise<void>((resolve) => run.on('tool.started', () => resolve()))
  await run.detach()
  const before = await readFile(path.join(dir, 'tool-gone', 'agents', 'solo.json'), 'utf8')

  const error = await runtime([])
    .resume('tool-gone')
    .catch((e: unknown) => e)
  expect(error).toBeInstanceOf(SnapshotError)
  expect((error as SnapshotError).field).toBe('snapshot.context.pending')
  expect((error as SnapshotError).message).toMatch(/calls tool "slow", which agent "solo" does not have/)
  expect(await readFile(path.join(dir, 'tool-gone', 'agents', 'solo.json'), 'utf8')).toBe(before)

  expect(await (await runtime([slow]).resume('tool-gone')).result).toMatch(/slow done/)
})

describe("a resumed agent's tool call, checked again against the tool of the runtime that resumes it", () => {
  const runtime = (pay: AnyTool, replies: Script) =>
    createRuntime({
      agents: [defineAgent({ name: 'payer', tools: [pay] })],
      model: scriptedModel(replies),
      store: fileStore(dir),
    })
  /** Detaches (as a deploy would) a run whose agent is in a call of version 1 of `pay`; its idempotency key. */
  const detachedInPay = async (runId: string): Promise<string> => {
    const keys: string[] = []
    const payV1 = defineTool({
      name: 'pay',
      description: 'Pays an amount',
      parameters: z.object({ amount: z.number() }),
      execute: (_args, ctx) => {
        keys.push(ctx.idempotencyKey)
        return new Promise((resolve) => ctx.signal.addEventListener('abort', () => resolve(undefined)))
      },
    })
    const script = { payer: [{ action: 'call_tool', tool: 'pay', args: { amount: 5 } }] }
    const run = runtime(payV1, script).start('payer', 'pay 5', { runId })
    await new Promise<void>((resolve) => run.on('tool.started', () => resolve()))
    await run.detach()
    expect(keys).toHaveLength(1)
    return keys[0]!
  }

  test('arguments of a changed shape are not run: the agent is told why and calls again', async () => {
    await detachedInPay('pay-renamed')
    const seen: unknown[] = []
    const payV2 = defineTool({
      name: 'pay',
      description: 'Pays an amount in cents',
      parameters: z.object({ cents: z.number().int() }),
      execute: (args) => {
        seen.push(args)
        return `paid ${args.cents} cents`
      },
    })
    const told: string[] = []
    const run = await runtime(payV2, {
      payer: [
        { action: 'call_tool', tool: 'pay', args: { amount: 5 } },
        (request) => {
          told.push(request.messages.at(-1)!.content)
          return { action: 'call_tool', tool: 'pay', args: { cents: 500 } }
        },
        (request) => ({ action: 'finish', result: request.messages.at(-1)!.content }),
      ],
    }).resume('pay-renamed')
    const repairs: string[] = []
    run.on('agent.repair', (event) => repairs.push(event.error))
    expect(await run.result).toMatch(/paid 500 cents/)
    expect(seen).toEqual([{ cents: 500 }])
    expect(told).toEqual([
      expect.stringMatching(/invalid arguments for tool "pay": args\.cents: .*checked again before it ran/),
    ])
    expect(repairs).toEqual([expect.stringMatching(/invalid arguments for tool "pay": args\.cents/)])
  })

  test("arguments still valid run as the current schema parses them, under the call's idempotency key", async () => {
    const keyBefore = await detachedInPay('pay-defaulted')
    const seen: { args: unknown; key: string }[] = []
    const payV2 = defineTool({
      name: 'pay',
      description: 'Pays an amount in a currency',
      parameters: z.object({ amount: z.number(), currency: z.string().default('EUR') }),
      execute: (args, ctx) => {
        seen.push({ args, key: ctx.idempotencyKey })
        return `paid ${args.amount} ${args.currency}`
      },
    })
    const run = await runtime(payV2, {
      payer: [
        { action: 'call_tool', tool: 'pay', args: { amount: 5 } },
        (request) => ({ action: 'finish', result: request.messages.at(-1)!.content }),
      ],
    }).resume('pay-defaulted')
    expect(await run.result).toMatch(/paid 5 EUR/)
    expect(keyBefore).toMatch(/^pay-defaulted:payer:/)
    expect(seen).toEqual([{ args: { amount: 5, currency: 'EUR' }, key: keyBefore }])
  })

  test("arguments a transform turns into another type run the same fresh and resumed: the model's, parsed before each run", async () => {
    // The model gives a string, execute gets a number: parsing what execute got again would fail.
    const payOf = (execute: (args: { amount: number }, ctx: ToolContext) => unknown) =>
      defineTool({
        name: 'pay',
        description: 'Pays an amount given as a string',
        parameters: z.object({ amount: z.string().transform(Number) }),
        execute,
      })
    const script = {
      payer: [
        { action: 'call_tool', tool: 'pay', args: { amount: '5' } },
        (request: ModelRequest) => ({ action: 'finish', result: request.messages.at(-1)!.content }),
      ],
    }
    const seen: { args: unknown; key: string }[] = []
    const pays = payOf((args, ctx) => {
      seen.push({ args, key: ctx.idempotencyKey })
      return `paid ${args.amount + 1}`
    })
    const started: unknown[] = []
    const fresh = runtime(pays, script).start('payer', 'pay 5', { runId: 'pay-fresh' })
    fresh.on('tool.started', (event) => started.push(event.args))
    expect(await fresh.result).toMatch(/paid 6/)

    const before: { args: unknown; key: string }[] = []
    const hangs = payOf((args, ctx) => {
      before.push({ args, key: ctx.idempotencyKey })
      return new Promise((resolve) => ctx.signal.addEventListener('abort', () => resolve(undefined)))
    })
    const detached = runtime(hangs, script).start('payer', 'pay 5', { runId: 'pay-transformed' })
    await new Promise<void>((resolve) => detached.on('tool.started', () => resolve()))
    await detached.detach()
    const resumed = await runtime(pays, script).resume('pay-transformed')
    expect(await resumed.result).toMatch(/paid 6/)

    expect(started).toEqual([{ amount: 5 }])
    expect(before).toEqual([
      { args: { amount: 5 }, key: expect.stringMatching(/^pay-transformed:payer:0\.0:/) },
    ])
    expect(seen).toEqual([
      { args: { amount: 5 }, key: expect.stringMatching(/^pay-fresh:payer:0\.0:/) },
      { args: { amount: 5 }, key: before[0]!.key },
    ])
    // The same call, digested alike in both runs.
    expect(seen[0]!.key.split(':').at(-1)).toBe(seen[1]!.key.split(':').at(-1))
  })
})

test('a long agent detached mid-way (most of its history in chunks beside its record) resumes in another runtime to the same result', async () => {
  const note = defineTool({
    name: 'note',
    description: 'Notes a number',
    parameters: z.object({ n: z.number() }),
    execute: ({ n }) => `noted ${n}`,
  })
  const reader = defineAgent({
    name: 'reader',
    instructions: 'Take notes.',
    tools: [note],
    limits: { maxSteps: 60 },
  })
  // The result is every tool result of the history, in order: a message lost or misplaced shows.
  const model = scriptedModel(
    {
      reader: (request) =>
        request.turn < 40
          ? { action: 'call_tool', tool: 'note', args: { n: request.turn } }
          : {
              action: 'finish',
              result: request.messages
                .filter((m) => m.content.startsWith('[call_tool'))
                .map((m) => m.content),
            },
    },
    { latencyMs: 2 },
  )
  const runtimeOn = (store: RunStore) => createRuntime({ agents: [reader], model, store })
  const uninterrupted = await runtimeOn(memoryStore()).run('reader', 'take notes')
  expect(uninterrupted).toHaveLength(40)

  const store = fileStore(path.join(dir, 'long'))
  const first = runtimeOn(store)
  const run = first.start('reader', 'take notes', { runId: 'long-1' })
  let notes = 0
  await new Promise<void>((resolve) =>
    run.on('tool.completed', () => {
      if (++notes === 25) resolve()
    }),
  )
  await run.detach()
  const stored = (await store.loadRun('long-1'))?.agents[0]
  expect(stored?.snapshot.context.messages.length).toBeGreaterThan(2 * historyChunkSize)
  expect(
    (await readdir(path.join(dir, 'long', 'long-1', 'agents', 'reader.history'))).length,
  ).toBeGreaterThan(1)

  const resumed = await runtimeOn(fileStore(path.join(dir, 'long'))).resume('long-1')
  expect(await resumed.result).toEqual(uninterrupted)
  const final = (await store.loadRun('long-1'))?.agents[0]
  expect(final?.snapshot.context.messages).toHaveLength(2 + 2 * 40 + 1)
})

/**
 * A lead that launches one-call workers `ids` and waits for them (in one turn, or in two), then
 * finishes with how many settled; `runtimeOn()` makes a runtime on the one memory store, as a
 * new process would.
 */
function fanOutOnOneStore(
  ids: string[],
  waitInItsOwnTurn: boolean,
  latencyMs: NonNullable<ScriptedModelOptions['latencyMs']>,
) {
  const worker = defineAgent({ name: 'worker', instructions: '' })
  const lead = defineAgent({ name: 'lead', instructions: '', subagents: ['worker'] })
  const launch = { action: 'launch_subagents', agents: ids.map((id) => ({ agent: 'worker', task: id, id })) }
  const wait = { action: 'wait_for_subagents' }
  const finish = (request: ModelRequest) => ({ action: 'finish', result: settledChildren(request).length })
  const model = scriptedModel(
    {
      lead: waitInItsOwnTurn ? [launch, wait, finish] : [[launch, wait], finish],
      worker: [{ action: 'finish', result: 'done' }],
    },
    { latencyMs },
  )
  const store = memoryStore()
  return { store, runtimeOn: () => createRuntime({ agents: [lead, worker], model, store }) }
}

test('metrics count the time a run was stopped: only its running segments are wall time, across runtimes', async () => {
  const { store, runtimeOn } = fanOutOnOneStore(['a', 'b', 'c', 'd'], true, 40)
  const first = runtimeOn()
  const run = first.start('lead', 'fan out', { runId: 'paused-1' })
  await new Promise<void>((resolve) => run.on('agent.suspended', () => resolve()))
  await run.detach()
  const stoppedFor = 1_500
  await new Promise((resolve) => setTimeout(resolve, stoppedFor))
  // The detached handle's wall time stopped with the run.
  expect(run.metrics().wallMs).toBeLessThan(stoppedFor / 3)

  const resumed = await runtimeOn().resume('paused-1')
  expect(await resumed.result).toBe(4)
  // Running: the lead's three turns and the workers' one, 40 ms each on the critical path (about
  // 160 ms over both segments); stopped for 1.5 s in between.
  const metrics = resumed.metrics()
  expect(metrics.wallMs).toBeGreaterThanOrEqual(3 * 40)
  expect(metrics.wallMs).toBeLessThan(stoppedFor / 2)
  expect(metrics.busyMs).toBeGreaterThanOrEqual(7 * 40 - 7)
  expect(metrics.speedup).toBeGreaterThan(0.4)
  // Kept in the run record, so a third process reads the same running time.
  const stored = await store.loadRunRecord!('paused-1')
  expect(stored?.stoppedMs).toBeGreaterThanOrEqual(stoppedFor)
  expect(stored?.detachedAt).toBeUndefined()
  expect(runWallMs(stored!)).toBe(metrics.wallMs)
})

test('a call a detach stopped counts as busy, as the wall time does: the speedup of a resumed run is not understated', async () => {
  const worker = defineAgent({ name: 'worker', instructions: '' })
  const model = scriptedModel({ worker: [{ action: 'finish', result: 'done' }] }, { latencyMs: 300 })
  const store = memoryStore()
  const runtimeOn = () => createRuntime({ agents: [worker], model, store })
  const run = runtimeOn().start('worker', 'go', { runId: 'cut-1' })
  await new Promise((resolve) => setTimeout(resolve, 200))
  await run.detach()
  const resumed = await runtimeOn().resume('cut-1')
  expect(await resumed.result).toBe('done')
  // About 200 ms before the detach and 300 after, in about as much wall time.
  const metrics = resumed.metrics()
  expect(metrics.busyMs).toBeGreaterThanOrEqual(480)
  expect(metrics.busyMs).toBeLessThanOrEqual(metrics.wallMs + 5)
  expect(metrics.speedup).toBeGreaterThan(0.9)
})

test('after a crash, the time the run was down is not wall time either: it counts from its last stored step', async () => {
  const { store, runtimeOn } = fanOutOnOneStore(['a', 'b', 'c', 'd'], true, 40)
  const run = runtimeOn().start('lead', 'fan out', { runId: 'crashed-1' })
  await new Promise<void>((resolve) => run.on('agent.suspended', () => resolve()))
  await run.detach()
  // As a killed process leaves it: running, and no detach recorded.
  const { detachedAt: _, ...crashed } = (await store.loadRunRecord!('crashed-1'))!
  await store.saveRun(crashed)
  const downFor = 1_500
  await new Promise((resolve) => setTimeout(resolve, downFor))

  const resumed = await runtimeOn().resume('crashed-1')
  expect(await resumed.result).toBe(4)
  expect(resumed.metrics().wallMs).toBeLessThan(downFor / 2)
  const stored = await store.loadRunRecord!('crashed-1')
  expect(stored?.stoppedMs).toBeGreaterThanOrEqual(downFor)
  expect(runWallMs(stored!)).toBe(resumed.metrics().wallMs)
})

test('peak parallelism counts the whole run: a run resumed after its widest part keeps that peak', async () => {
  // The lead's last call is slow, so the run is detached while only the lead is busy.
  const { store, runtimeOn } = fanOutOnOneStore(['a', 'b', 'c'], false, (request) =>
    request.agent.depth === 0 && request.turn === 1 ? 400 : 40,
  )
  const run = runtimeOn().start('lead', 'fan out', { runId: 'peak-1' })
  await new Promise<void>((resolve) =>
    run.on('model.started', (event) => {
      if (event.depth === 0 && event.turn === 1) resolve()
    }),
  )
  expect(run.metrics().peakParallelism).toBe(3)
  await run.detach()
  expect((await store.loadRunRecord!('peak-1'))?.peakParallelism).toBe(3)

  // The resumed process only ever has the lead busy.
  const resumed = await runtimeOn().resume('peak-1')
  expect(await resumed.result).toBe(3)
  expect(resumed.metrics().peakParallelism).toBe(3)
  expect((await store.loadRunRecord!('peak-1'))?.peakParallelism).toBe(3)
})

test("a run detached and resumed in the same runtime is counted once in the runtime's metrics", async () => {
  const { runtimeOn } = fanOutOnOneStore(['a', 'b'], false, () => 30)
  const runtime = runtimeOn()
  const run = runtime.start('lead', 'fan out', { runId: 'counted-once' })
  await new Promise<void>((resolve) => run.on('agent.suspended', () => resolve()))
  await run.detach()
  const resumed = await runtime.resume('counted-once')
  await resumed.result
  const totals = runtime.metrics()
  expect(totals.runs.completed).toBe(1)
  expect(totals.agents).toBe(3)
  expect(totals.tokens).toBe(resumed.metrics().tokens.total)
  // Resumed once it has ended, it is the same ended run: counted no more, its end not told again.
  const ends: string[] = []
  runtime.on('run.completed', (event) => ends.push(event.runId))
  for (let i = 0; i < 3; i++)
    expect(await (await runtime.resume('counted-once')).result).toEqual(await resumed.result)
  expect(ends).toEqual([])
  expect(runtime.metrics()).toEqual(totals)
})

test("a resumed agent's timeout counts the time it ran, not the time its run was stopped; run.resumed reaches the resumed Run", async () => {
  const store = memoryStore()
  const worker = defineAgent({ name: 'worker', instructions: '', tools: [sleep] })
  const lead = defineAgent({ name: 'lead', instructions: '', subagents: [worker] })
  const model = scriptedModel({
    lead: [
      { action: 'launch_subagents', agents: [{ agent: 'worker', task: 't', id: 'a', timeout_ms: 600 }] },
      { action: 'wait_for_subagents' },
      (request) => ({ action: 'finish', result: settledChildren(request).map((child) => child.status) }),
    ],
    worker: [
      { action: 'call_tool', tool: 'sleep', args: { seconds: 0.3 } },
      { action: 'finish', result: 'slept' },
    ],
  })
  const runtime = () => createRuntime({ agents: [lead, worker], model, store })
  const first = runtime()
  const run = first.start('lead', 'go')
  await new Promise<void>((resolve) => run.on('tool.started', () => resolve()))
  await first.shutdown()
  // Stopped longer than the worker's whole timeout: counted, it would time out at once.
  await new Promise((resolve) => setTimeout(resolve, 700))
  const resumed = await runtime().resume(run.id)
  const seen: string[] = []
  resumed.on('event', (event) => seen.push(event.type))
  expect(await resumed.result).toEqual(['completed'])
  expect(seen[0]).toBe('run.resumed')
})

describe('an effect a stop cut off runs again in full within its timeouts', () => {
  // Worker a (600 ms to live) sleeps 400 ms; c's step is stored 250 ms in; the run stops 300 ms
  // in, with a's sleep in flight. The sleep runs again from its start on resume: the 300 ms it
  // had run are given back to a's timeout, and to its lead's (650 ms), which waits on it.
  const worker = defineAgent({ name: 'worker', instructions: '', tools: [sleep] })
  const lead = defineAgent({
    name: 'lead',
    instructions: '',
    subagents: [worker],
    limits: { timeoutMs: 650 },
  })
  const model = scriptedModel({
    lead: [
      {
        action: 'launch_subagents',
        agents: [
          { agent: 'worker', task: '0.4', id: 'a', timeout_ms: 600 },
          { agent: 'worker', task: '0.25', id: 'c' },
        ],
      },
      { action: 'wait_for_subagents' },
      (request) => ({ action: 'finish', result: settledChildren(request).map((child) => child.status) }),
    ],
    worker: [
      (request) => ({ action: 'call_tool', tool: 'sleep', args: { seconds: Number(request.agent.task) } }),
      { action: 'finish', result: 'slept' },
    ],
  })
  const runtimeOn = (store: RunStore) => createRuntime({ agents: [lead, worker], model, store })
  /** Starts the run; resolves 300 ms after a's sleep began. */
  async function stoppedMidway(store: RunStore) {
    const first = runtimeOn(store)
    const run = first.start('lead', 'go')
    await new Promise<void>((resolve) =>
      run.on('tool.started', (event) => {
        if (event.agentId === 'lead.a') resolve()
      }),
    )
    await new Promise((resolve) => setTimeout(resolve, 300))
    return { first, run }
  }

  test('uninterrupted, both complete', async () => {
    expect(await runtimeOn(memoryStore()).run('lead', 'go')).toEqual(['completed', 'completed'])
  })

  test('after a detach', async () => {
    const store = memoryStore()
    const { first, run } = await stoppedMidway(store)
    await first.shutdown()
    const resumed = await runtimeOn(store).resume(run.id)
    expect(await resumed.result).toEqual(['completed', 'completed'])
  })

  test('after a crash', async () => {
    const store = memoryStore()
    const { first, run } = await stoppedMidway(store)
    // What the store held at the crash; the first runtime's later writes go elsewhere.
    const held = (await store.loadRun(run.id))!
    await first.shutdown()
    const crashed = memoryStore()
    await crashed.saveRun(held.run)
    for (const record of held.agents) await crashed.saveAgent(run.id, record)
    const resumed = await runtimeOn(crashed).resume(run.id)
    expect(await resumed.result).toEqual(['completed', 'completed'])
  })
})

describe('tools after a crash', () => {
  test('a tool call cut off by a crash runs again with the same idempotency key (at-least-once)', async () => {
    const storeDir = path.join(dir, 'tools')
    const ledger = path.join(dir, 'ledger.txt')
    const first = spawnTs('tests/fixtures/idempotent-tool.ts', ['start', storeDir, 'pay-1', ledger])
    await collect(first, (line) => {
      if (line === 'tool-started') first.kill('SIGKILL')
    })
    const second = await collect(
      spawnTs('tests/fixtures/idempotent-tool.ts', ['resume', storeDir, 'pay-1', ledger]),
    )
    expect(second.code, second.stderr).toBe(0)
    expect(resultLine(second.stdout)).toBe('[call_tool charge] {"charged":250}')
    const lines = (await readFile(ledger, 'utf8')).trim().split('\n')
    // The same call (agent, turn, tool, arguments): the same key, which ends in a digest of the arguments.
    expect(lines).toHaveLength(2)
    expect(lines[0]).toMatch(/^pay-1:cashier:0\.0:[\w-]{16} 250$/)
    expect(lines[1]).toBe(lines[0])
  })
})

describe('messages after a crash', () => {
  // The worker sends its parent a message, then sleeps. The lead's record with the message in its
  // inbox is stored before the worker's record is past the send: a crash there resumes the worker
  // with the send still pending, and it runs again.
  const worker = defineAgent({ name: 'worker', instructions: '', tools: [sleep] })
  const lead = defineAgent({ name: 'lead', instructions: '', subagents: [worker] })
  const model = scriptedModel({
    lead: [
      { action: 'launch_subagents', agents: [{ agent: 'worker', task: 't', id: 'a' }] },
      { action: 'wait_for_subagents' },
      (request) => ({
        action: 'finish',
        result: request.messages.filter((m) => m.content.includes('hello')).map((m) => m.content),
      }),
    ],
    worker: [
      [
        { action: 'send_message', to: 'parent', text: 'hello' },
        { action: 'call_tool', tool: 'sleep', args: { seconds: 0.05 } },
      ],
      { action: 'finish', result: 'ok' },
    ],
  })
  const runtimeOn = (store: RunStore) => createRuntime({ agents: [lead, worker], model, store })

  test('a send_message run again on resume is delivered once', async () => {
    const uninterrupted = await runtimeOn(memoryStore()).run('lead', 'go')
    expect(uninterrupted).toEqual(['[message from lead.a] hello'])

    // What the store held once it had the lead's inbox: its next write is not started until this one returns.
    const base = memoryStore()
    let held: Awaited<ReturnType<RunStore['loadRun']>>
    const store: RunStore = Object.create(base)
    store.saveAgent = async (runId, record, storedMessages) => {
      await base.saveAgent(runId, record, storedMessages)
      if (!held && record.id === 'lead' && record.snapshot.context.inbox.length > 0)
        held = await base.loadRun(runId)
    }
    const first = runtimeOn(store)
    const run = first.start('lead', 'go')
    await run.result
    await first.shutdown()
    expect(held?.agents.find((agent) => agent.id === 'lead.a')?.snapshot.context.pending[0]).toMatchObject({
      action: 'send_message',
    })

    const crashed = memoryStore()
    await crashed.saveRun(held!.run)
    for (const record of held!.agents) await crashed.saveAgent(run.id, record)
    const resumed = await runtimeOn(crashed).resume(run.id)
    expect(await resumed.result).toEqual(uninterrupted)
  })
})

test('a launch cut off after some of its children were stored resumes those and starts only the rest', async () => {
  const worker = defineAgent({ name: 'worker', instructions: 'Report.' })
  const lead = defineAgent({ name: 'lead', instructions: 'Fan out.', subagents: [worker] })
  const calls = new Map<string, number>()
  const script = () =>
    scriptedModel(
      {
        lead: [
          {
            action: 'launch_subagents',
            agents: ['a', 'b'].map((id) => ({ agent: 'worker', task: id, id })),
          },
          { action: 'wait_for_subagents' },
          (request) => ({ action: 'finish', result: settledChildren(request).map((child) => child.result) }),
        ],
        worker: (request) => {
          calls.set(request.agent.id, (calls.get(request.agent.id) ?? 0) + 1)
          return { action: 'finish', result: `${request.agent.task} done` }
        },
      },
      // A child's first record is its running state, written before its model call returns.
      { latencyMs: (request) => (request.agent.depth > 0 ? 5 : 0) },
    )
  // Keep what a crash in the middle of the launch leaves: the lead about to launch, child a's
  // first record, no record of child b.
  const inner = memoryStore()
  const kept = new Map<string, AgentRecord>()
  const store: RunStore = {
    ...inner,
    saveAgent: async (runId, record) => {
      const { context } = record.snapshot
      const launching = record.id === 'lead' && context.pending[0]?.action === 'launch_subagents'
      if ((launching || record.id === 'lead.a') && !kept.has(record.id))
        kept.set(record.id, structuredClone(record))
      await inner.saveAgent(runId, record)
    },
  }
  const expected = await createRuntime({ agents: [lead, worker], model: script(), store }).run('lead', 'go', {
    runId: 'cut',
  })
  expect(expected).toEqual(['a done', 'b done'])
  expect([...kept.keys()]).toEqual(['lead', 'lead.a'])

  const crashed = memoryStore()
  const run = (await inner.loadRun('cut'))!.run
  await crashed.saveRun({ ...run, status: 'running', result: undefined })
  for (const record of kept.values()) await crashed.saveAgent('cut', record)
  calls.clear()
  const resumed = await createRuntime({ agents: [lead, worker], model: script(), store: crashed }).resume(
    'cut',
  )
  expect(await resumed.result).toEqual(expected)
  // Long enough for a second copy of child a, had one been started, to make its call too.
  await new Promise((resolve) => setTimeout(resolve, 30))
  // Child a runs on from its record and child b starts: each makes its one model call, once.
  expect(Object.fromEntries(calls)).toEqual({ 'lead.a': 1, 'lead.b': 1 })
  const after = await crashed.loadRun('cut')
  expect(after?.agents.map((agent) => `${agent.id}: ${agent.status}`).sort()).toEqual([
    'lead.a: completed',
    'lead.b: completed',
    'lead: completed',
  ])
})

test('agents whose parent ended before the crash end on resume, with nothing of them run again', async () => {
  const worker = defineAgent({ name: 'worker', instructions: 'Report.' })
  const mid = defineAgent({ name: 'mid', instructions: 'Fan out.', subagents: [worker] })
  const top = defineAgent({ name: 'top', instructions: 'Delegate.', subagents: [mid] })
  const workerCalls: string[] = []
  const script = () =>
    scriptedModel(
      {
        top: [
          { action: 'launch_subagents', agents: [{ agent: 'mid', task: 'fan out', id: 'mid' }] },
          { action: 'wait_for_subagents' },
          (request) => ({ action: 'finish', result: settledChildren(request).map((child) => child.status) }),
        ],
        mid: [
          {
            action: 'launch_subagents',
            agents: ['a', 'b'].map((id) => ({ agent: 'worker', task: id, id })),
          },
          { action: 'wait_for_subagents' },
          { action: 'finish', result: 'done' },
        ],
        worker: (request) => {
          workerCalls.push(request.agent.id)
          return { action: 'finish', result: 'ok' }
        },
      },
      // top's last call outlasts a worker's.
      { latencyMs: ({ agent, turn }) => (agent.depth === 2 ? 5 : agent.depth === 0 && turn === 2 ? 50 : 0) },
    )
  // A crash after mid's failure was stored and before its running children's were: mid failed,
  // a child it launched running, the other child stored as its parent's launch listed it.
  const inner = memoryStore()
  await createRuntime({ agents: [top, mid, worker], model: script(), store: inner }).run('top', 'go', {
    runId: 'orphans',
  })
  const stored = (await inner.loadRun('orphans'))!
  const byId = new Map(stored.agents.map((record) => [record.id, record]))
  const crashed = memoryStore()
  await crashed.saveRun({ ...stored.run, status: 'running', result: undefined })
  const failedMid = structuredClone(byId.get('top.mid')!)
  failedMid.status = 'failed'
  failedMid.snapshot.value = 'failed'
  failedMid.snapshot.status = 'done'
  failedMid.snapshot.context.error = { name: 'TimeoutError', code: 'TIMEOUT', message: 'too slow' }
  // Launched, not yet listed: mid's record knows of child a only.
  failedMid.snapshot.context.children = failedMid.snapshot.context.children.filter((c) => c.localId === 'a')
  await crashed.saveAgent('orphans', failedMid)
  const waitingTop = structuredClone(byId.get('top')!)
  waitingTop.status = 'suspended'
  waitingTop.snapshot.value = { suspended: 'children' }
  waitingTop.snapshot.status = 'active'
  Object.assign(waitingTop.snapshot.context, {
    endedAt: null,
    result: undefined,
    waitingOn: ['mid'],
    turn: 2,
  })
  waitingTop.snapshot.context.messages = waitingTop.snapshot.context.messages.slice(0, -2)
  waitingTop.snapshot.context.delivered = []
  await crashed.saveAgent('orphans', waitingTop)
  for (const id of ['top.mid.a', 'top.mid.b']) {
    const running = structuredClone(byId.get(id)!)
    running.status = 'running'
    running.snapshot.value = { running: 'thinking' }
    running.snapshot.status = 'active'
    Object.assign(running.snapshot.context, { endedAt: null, result: undefined, turn: 0 })
    running.snapshot.context.messages = running.snapshot.context.messages.slice(0, 2)
    await crashed.saveAgent('orphans', running)
  }
  workerCalls.length = 0

  const resumed = await createRuntime({ agents: [top, mid, worker], model: script(), store: crashed }).resume(
    'orphans',
  )
  expect(await resumed.result).toEqual(['failed'])
  await new Promise((resolve) => setTimeout(resolve, 20))
  expect(workerCalls).toEqual([])
  const after = (await crashed.loadRun('orphans'))!
  for (const id of ['top.mid.a', 'top.mid.b']) {
    const record = after.agents.find((agent) => agent.id === id)!
    expect(record.status).toBe('failed')
    expect(record.snapshot.context.error?.message).toBe('parent top.mid has ended')
  }
})

test('a run resumed from the store sends its model the messages an uninterrupted run sends, key for key', async () => {
  const echo = defineTool({
    name: 'echo',
    description: 'echoes',
    parameters: z.object({ text: z.string() }),
    execute: ({ text }) => text,
  })
  const solo = defineAgent({ name: 'solo', instructions: 'Echo.', tools: [echo] })
  const requests: string[] = []
  let gate: Promise<void> = Promise.resolve()
  const model = scriptedModel({
    solo: [
      { text: '', toolCalls: [{ id: 'call_0', name: 'echo', arguments: '{"text":"hi"}' }] },
      async (request) => {
        requests.push(JSON.stringify(request.messages))
        await gate
        return { action: 'finish', result: 'done' }
      },
    ],
  })
  const runtime = () => createRuntime({ agents: [solo], model, store: fileStore(dir) })
  expect(await runtime().run('solo', 'go', { runId: 'straight' })).toBe('done')

  let open: () => void = () => {}
  gate = new Promise((resolve) => {
    open = resolve
  })
  const run = runtime().start('solo', 'go', { runId: 'cut' })
  await new Promise<void>((resolve) => {
    const wait = setInterval(() => {
      if (requests.length === 2) {
        clearInterval(wait)
        resolve()
      }
    }, 5)
  })
  await run.detach()
  open()
  expect(await (await runtime().resume('cut')).result).toBe('done')
  expect(requests).toHaveLength(3)
  expect(requests[2]).toBe(requests[0])
})
