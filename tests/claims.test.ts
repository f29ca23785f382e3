// One run, one process at a time: a runtime claims each run it starts, resumes or answers
// (`RunStore.claimRun`), so a second process is refused instead of running it too.
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { startServer } from '@cohort/cli'
import {
  type CohortError,
  createRuntime,
  defineAgent,
  defineTool,
  fileStore,
  memoryStore,
  scriptedModel,
} from '@cohort/core'
import { afterEach, beforeEach, expect, test, vi } from 'vitest'
import { z } from 'zod'
import { approvalRuntime, executions } from './fixtures/approval-scenario.js'
import { waitUntil } from './support/scripts.js'

let dir: string
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'cohort-claims-'))
  executions.length = 0
})
afterEach(async () => {
  await rm(dir, { recursive: true, force: true })
})

test('a run one runtime runs is refused to another (resume, answer), naming the process; once it stops, the other resumes it', async () => {
  let calls = 0
  let finishStep: () => void = () => {}
  const step = defineTool({
    name: 'step',
    description: 'A step with a side effect',
    parameters: z.object({}),
    execute: () => {
      calls++
      return new Promise<string>((resolve) => {
        finishStep = () => resolve('stepped')
      })
    },
  })
  const runtime = () =>
    createRuntime({
      agents: [defineAgent({ name: 'solo', tools: [step] })],
      model: scriptedModel({
        solo: [
          { action: 'call_tool', tool: 'step', args: {} },
          { action: 'finish', result: 'done' },
        ],
      }),
      store: fileStore(dir),
    })
  const first = runtime()
  const run = first.start('solo', 'go', { runId: 'held' })
  await new Promise<void>((resolve) => run.on('tool.started', () => resolve()))

  const second = runtime()
  const refused = (await second.resume('held').catch((error: unknown) => error)) as CohortError
  expect(refused).toMatchObject({ code: 'RUN_BUSY' })
  expect(refused.message).toMatch(
    new RegExp(
      `^run held is running in another runtime of this process \\(${process.pid}\\): resume, answer or cancel it there`,
    ),
  )
  await expect(second.answer('held', 'solo', { payload: 1 })).rejects.toMatchObject({ code: 'RUN_BUSY' })
  expect(calls).toBe(1)

  // Stopped where it is, the run is the other's to go on with; its claim goes with the detach.
  await run.detach()
  const resumed = await second.resume('held')
  await new Promise((resolve) => setTimeout(resolve, 20))
  finishStep()
  expect(await resumed.result).toBe('done')
  // Cut off by the detach, the step ran again once in the process that finished the run.
  expect(calls).toBe(2)
  // Finished: any runtime may read it again, and resuming it runs nothing.
  expect(await (await runtime().resume('held')).result).toBe('done')
})

test('two answers to one agent at once, from two runtimes: one is taken, the other refused, and the call runs once', async () => {
  const first = approvalRuntime(dir)
  const run = first.start('operator', 'ship it', { runId: 'asks' })
  const callId = await new Promise<string>((resolve) =>
    run.on('agent.suspended', (event) => {
      if (event.awaiting) resolve(event.awaiting.callId)
    }),
  )
  await first.shutdown()

  const answers = await Promise.allSettled([
    approvalRuntime(dir).answer('asks', 'operator', { approve: callId }),
    approvalRuntime(dir).answer('asks', 'operator', { reject: callId, reason: 'not today' }),
  ])
  expect(answers.filter((answer) => answer.status === 'fulfilled')).toHaveLength(1)
  const [refusal] = answers.filter((answer) => answer.status === 'rejected')
  expect(String(refusal?.reason)).toMatch(
    /is running in another runtime of this process|is not waiting for approval/,
  )

  // The answer taken is the one the run goes on with.
  const approved = answers[0]!.status === 'fulfilled'
  const resumed = await approvalRuntime(dir).resume('asks')
  await new Promise<void>((resolve) =>
    resumed.on('agent.suspended', (event) => {
      if (event.awaiting?.kind === 'input') resolve()
    }),
  )
  expect(executions).toEqual(approved ? ['deploy api'] : [])
  await resumed.cancel()
})

test('over HTTP, a run another process runs is a 409 with Retry-After, naming that process', async () => {
  const holder = approvalRuntime(dir)
  const run = holder.start('operator', 'ship it', { runId: 'elsewhere' })
  const callId = await new Promise<string>((resolve) =>
    run.on('agent.suspended', (event) => {
      if (event.awaiting) resolve(event.awaiting.callId)
    }),
  )
  const server = await startServer({ runtime: approvalRuntime(dir), token: false })
  try {
    for (const [route, body] of [
      ['cancel', undefined],
      ['agents/operator/approve', { callId }],
    ] as const) {
      const response = await fetch(`${server.url}api/runs/elsewhere/${route}`, {
        method: 'POST',
        ...(body && { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }),
      })
      expect(response.status, route).toBe(409)
      expect(Number(response.headers.get('retry-after'))).toBeGreaterThan(0)
      expect(((await response.json()) as { error: string }).error).toMatch(
        new RegExp(`^run elsewhere is running in another runtime of this process \\(${process.pid}\\)`),
      )
    }
    expect(executions).toEqual([])
  } finally {
    await server.close()
    await run.cancel()
  }
})

test('a runtime shut down with a claim its store failed to let go of leaves it to another runtime of the process at once', async () => {
  const store = fileStore(dir)
  let releases = 0
  const flaky = {
    ...store,
    releaseRun: async (runId: string, owner: string) => {
      if (releases++ === 0) throw new Error('ECONNRESET')
      await store.releaseRun(runId, owner)
    },
  }
  const solo = defineAgent({ name: 'solo', tools: [] })
  const model = scriptedModel({ solo: [{ action: 'finish', result: 'done' }] })
  const first = createRuntime({ agents: [solo], model, store: flaky })
  const run = first.start('solo', 'go', { runId: 'left' })
  await run.detach().catch(() => {})
  await first.shutdown()
  // The claim is still stored, in this process's name, until it lapses…
  expect((await store.claimRun('left', { owner: 'probe', until: Date.now() + 1000 })).owner).not.toBe('probe')
  // …but its runtime is gone: another takes the run over now, not 30 s later.
  const second = createRuntime({ agents: [solo], model, store })
  expect(await (await second.resume('left')).result).toBe('done')
})

test("a run that its store's retention removes as it finishes, before it lets go of its claim, still ends with its result (the renewal finds no claim)", async () => {
  // Many runs finishing at once on a store that keeps few: a run's final record is written, the
  // retention of another's (or its own) removes it with its claim, and only then is it let go of.
  vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] })
  try {
    const inner = memoryStore({ retention: { maxFinishedRuns: 0 } })
    let renewals = 0
    const store: typeof inner = {
      ...inner,
      async claimRun(runId, request) {
        if (request.renewing) renewals++
        return inner.claimRun(runId, request)
      },
      async saveRun(record) {
        await inner.saveRun(record)
        if (record.status === 'running') return
        // The claim's renewal comes while the run's end is being written.
        // Renewed at least once within a claim's 30 s.
        vi.advanceTimersByTime(30_000)
        await waitUntil(() => renewals > 0, 5_000, 1)
        for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve))
      },
    }
    const runtime = createRuntime({
      agents: [defineAgent({ name: 'solo' })],
      model: scriptedModel({ solo: [{ action: 'finish', result: 'done' }] }),
      store,
    })
    await expect(runtime.run('solo', 'go')).resolves.toBe('done')
    expect(renewals).toBeGreaterThan(0)
    // The runtime goes on: the next run ends as well.
    await expect(runtime.run('solo', 'again')).resolves.toBe('done')
    await runtime.shutdown()
  } finally {
    vi.useRealTimers()
  }
})
