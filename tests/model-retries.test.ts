import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import {
  AgentFailedError,
  CancelledError,
  type ChatModel,
  type CohortEvent,
  createRuntime,
  defineAgent,
  fileStore,
  ModelError,
  type ModelReply,
} from '@cohort/core'
import { expect, test } from 'vitest'

const solo = defineAgent({ name: 'solo', instructions: 'Answer.' })
const finish: ModelReply = { text: '{"action": "finish", "result": "done"}' }

/** A model of its own (not the OpenAI adapter) whose first `failures` calls throw `error`. */
function flakyModel(failures: number, error: () => unknown, extra: Partial<ChatModel> = {}) {
  const calls = { count: 0 }
  const model: ChatModel = {
    name: 'flaky',
    ...extra,
    async complete() {
      calls.count++
      if (calls.count <= failures) throw error()
      return finish
    },
  }
  return { model, calls }
}

const overloaded = () =>
  new ModelError('HTTP 503: overloaded', { status: 503, retryable: true, retryAfterMs: 5 })

test("the runtime retries any model's transient failure, after the wait it asks for, and counts the retries", async () => {
  const { model, calls } = flakyModel(2, overloaded)
  const run = createRuntime({ agents: [solo], model }).start('solo', 'go')
  const events: CohortEvent[] = []
  run.on('event', (event) => events.push(event))
  expect(await run.result).toBe('done')
  expect(calls.count).toBe(3)
  expect(events.filter((event) => event.type === 'model.retrying')).toMatchObject([
    { retry: 1, maxRetries: 3, waitMs: 5, status: 503, error: 'HTTP 503: overloaded' },
    { retry: 2, maxRetries: 3, waitMs: 5 },
  ])
  expect(events.find((event) => event.type === 'model.completed')).toMatchObject({ retries: 2 })
  expect(run.metrics().retries).toBe(2)
})

test('past maxModelRetries the call fails, saying how many retries it made; what is not retryable fails at once', async () => {
  const flaky = flakyModel(5, overloaded)
  const runtime = createRuntime({ agents: [solo], model: flaky.model, scheduler: { maxModelRetries: 1 } })
  const run = runtime.start('solo', 'go')
  await expect(run.result).rejects.toThrow(/HTTP 503: overloaded \(after 1 retry\)/)
  expect(flaky.calls.count).toBe(2)
  expect(run.metrics().retries).toBe(1)

  const refused = flakyModel(5, () => new ModelError('HTTP 400: bad request', { status: 400 }))
  await expect(createRuntime({ agents: [solo], model: refused.model }).run('solo', 'go')).rejects.toThrow(
    /HTTP 400: bad request$/,
  )
  expect(refused.calls.count).toBe(1)
  // A plain Error is an adapter's bug, not a transient failure.
  const broken = flakyModel(5, () => new TypeError('x is undefined'))
  await expect(createRuntime({ agents: [solo], model: broken.model }).run('solo', 'go')).rejects.toThrow(
    /x is undefined/,
  )
  expect(broken.calls.count).toBe(1)
  expect(() =>
    createRuntime({ agents: [solo], model: broken.model, scheduler: { maxModelRetries: -1 } }),
  ).toThrow(/maxModelRetries/)
})

test('a model that retries its own calls is not retried again; a wait longer than 60 s fails at once', async () => {
  const own = flakyModel(5, overloaded, { handlesRetries: true })
  await expect(createRuntime({ agents: [solo], model: own.model }).run('solo', 'go')).rejects.toThrow(
    /HTTP 503/,
  )
  expect(own.calls.count).toBe(1)

  const patient = flakyModel(
    5,
    () => new ModelError('HTTP 429', { status: 429, retryable: true, retryAfterMs: 3_600_000 }),
  )
  await expect(createRuntime({ agents: [solo], model: patient.model }).run('solo', 'go')).rejects.toThrow(
    /asked to wait 3600 s before a retry, longer than the 60 s Cohort waits at most/,
  )
  expect(patient.calls.count).toBe(1)
})

test('a cancel ends the wait before a retry', async () => {
  const slow = flakyModel(
    5,
    () => new ModelError('HTTP 429', { status: 429, retryable: true, retryAfterMs: 30_000 }),
  )
  const run = createRuntime({ agents: [solo], model: slow.model }).start('solo', 'go')
  const retrying = new Promise((resolve) => run.on('model.retrying', resolve))
  await retrying
  const started = performance.now()
  await run.cancel('enough')
  await expect(run.result).rejects.toBeInstanceOf(CancelledError)
  expect(performance.now() - started).toBeLessThan(10_000)
  expect(slow.calls.count).toBe(1)
})

test('a call that showed a fragment of its reply is not retried; a wait that is no number is a backoff', async () => {
  let calls = 0
  const streaming: ChatModel = {
    name: 'streaming',
    async complete(request) {
      calls++
      request.onToken?.('partial ')
      throw new ModelError('HTTP 503: dropped mid-reply', { status: 503, retryable: true, retryAfterMs: 5 })
    },
  }
  const run = createRuntime({ agents: [solo], model: streaming }).start('solo', 'go')
  const tokens: string[] = []
  run.on('model.token', (event) => tokens.push(event.text))
  await expect(run.result).rejects.toThrow(/dropped mid-reply/)
  expect(calls).toBe(1)
  expect(tokens).toEqual(['partial '])

  const confused = flakyModel(
    1,
    () => new ModelError('HTTP 503', { status: 503, retryable: true, retryAfterMs: Number.NaN }),
  )
  const retried = createRuntime({ agents: [solo], model: confused.model }).start('solo', 'go')
  const waits: number[] = []
  retried.on('model.retrying', (event) => waits.push(event.waitMs))
  expect(await retried.result).toBe('done')
  expect(waits).toHaveLength(1)
  expect(Number.isFinite(waits[0])).toBe(true)
})

test("a failed run's cause keeps the ModelError's status and retries, live and read back from the store", async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'cohort-retries-'))
  try {
    const flaky = flakyModel(5, overloaded)
    const runtime = createRuntime({
      agents: [solo],
      model: flaky.model,
      store: fileStore(dir),
      scheduler: { maxModelRetries: 2 },
    })
    const run = runtime.start('solo', 'go', { runId: 'failed-1' })
    const live = await run.result.catch((error: unknown) => error)
    const resumed = createRuntime({ agents: [solo], model: flaky.model, store: fileStore(dir) }).resume(
      'failed-1',
    )
    const stored = await resumed.then((handle) => handle.result).catch((error: unknown) => error)
    for (const error of [live, stored]) {
      expect(error).toBeInstanceOf(AgentFailedError)
      const cause = (error as AgentFailedError).cause
      expect(cause).toBeInstanceOf(ModelError)
      expect(cause).toMatchObject({
        status: 503,
        retries: 2,
        message: 'HTTP 503: overloaded (after 2 retries)',
      })
    }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
})
