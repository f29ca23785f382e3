import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { type CohortServer, startServer } from '@cohort/cli'
import { afterEach, beforeEach, describe, expect, test } from 'vitest'
import type { z } from 'zod'
import { routes } from '../packages/cli/src/server/api-routes.js'
import { awaitingShape, processShape, runRecordShape } from '../packages/cli/src/server/api-shapes.js'
import { awaitingSchema } from '../packages/core/src/agent/context.js'
import { processRecordSchema } from '../packages/core/src/models/process-record.js'
import { runRecordSchema } from '../packages/core/src/persistence/records.js'
import { approvalRuntime } from './fixtures/approval-scenario.js'
import { waitUntil } from './support/scripts.js'

let dir: string
let server: CohortServer | undefined
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'cohort-contract-'))
})
afterEach(async () => {
  await server?.close()
  server = undefined
  await rm(dir, { recursive: true, force: true })
})

type Route = (typeof routes)[keyof typeof routes]
type Answer = { description: string; content?: { 'application/json': { schema: z.ZodType } } }

/** Calls the route as a client would and checks the answer against what the route declares. */
async function call(route: Route, params: Record<string, string>, body?: unknown, query = '') {
  const at = route.path.replace(/\{(\w+)\}/g, (_, name: string) => encodeURIComponent(params[name]!))
  const response = await fetch(`${server!.url}${at.slice(1)}${query}`, {
    method: route.method.toUpperCase(),
    headers: {
      authorization: `Bearer ${server!.token}`,
      ...(body !== undefined && { 'content-type': 'application/json' }),
    },
    ...(body !== undefined && { body: JSON.stringify(body) }),
  })
  const text = await response.text()
  const declared = (route.responses as Record<string, Answer>)[String(response.status)]
  const where = `${route.method} ${at}${query} answered ${response.status} ${text}`
  expect(declared, `${where}: a status its OpenAPI route does not declare`).toBeDefined()
  const schema = declared!.content?.['application/json'].schema
  const json = text === '' ? undefined : JSON.parse(text)
  if (schema) {
    const parsed = schema.safeParse(json)
    expect(parsed.success, `${where}: ${parsed.error?.message}`).toBe(true)
  }
  return { status: response.status, body: json }
}

describe('the HTTP API answers as its OpenAPI document says', () => {
  test('every route, with good and bad requests: each status is declared and each body fits its schema', async () => {
    server = await startServer({ runtime: approvalRuntime(dir) })
    const run = { runId: 'ship-1' }
    const agent = { runId: 'ship-1', agentId: 'operator' }
    expect((await call(routes.startRun, {}, { task: 'ship it', runId: 'ship-1' })).status).toBe(201)
    expect((await call(routes.startRun, {}, { task: 'again', runId: 'ship-1' })).status).toBe(409)
    expect((await call(routes.startRun, {}, { task: '' })).status).toBe(400)
    expect((await call(routes.listRuns, {}, undefined, '?status=running')).status).toBe(200)
    expect((await call(routes.listRuns, {}, undefined, '?colour=red')).status).toBe(400)
    await waitUntil(async () => (await call(routes.getAgent, agent)).body.agent.awaiting !== undefined)
    const view = await call(routes.getRun, run)
    expect(view.status).toBe(200)
    expect((await call(routes.getRun, { runId: 'nope' })).status).toBe(404)
    expect((await call(routes.getAgent, { runId: 'ship-1', agentId: 'nobody' })).status).toBe(404)
    const callId = view.body.agents[0].awaiting.callId as string
    expect((await call(routes.approve, agent, { callId: 'nope' })).status).toBe(400)
    expect((await call(routes.approve, agent, { callId })).status).toBe(202)
    await waitUntil(async () => (await call(routes.getAgent, agent)).body.agent.awaiting?.kind === 'input')
    expect((await call(routes.reject, agent, { callId: 'nope' })).status).toBe(400)
    expect((await call(routes.sendMessage, agent, { text: 'hello' })).status).toBe(202)
    expect((await call(routes.sendMessage, agent, { text: '' })).status).toBe(400)
    expect((await call(routes.resumeAgent, agent, { payload: 'eu-west' })).status).toBe(202)
    await waitUntil(async () => (await call(routes.getRun, run)).body.run.status === 'completed')
    expect((await call(routes.resumeRun, run)).status).toBe(409)
    expect((await call(routes.cancelRun, run)).status).toBe(409)
    expect((await call(routes.cancelRun, { runId: 'nope' })).status).toBe(404)
    expect((await call(routes.resumeRun, { runId: 'nope' })).status).toBe(404)
    expect((await call(routes.startRun, {}, { task: 'cancel me', runId: 'ship-2' })).status).toBe(201)
    expect((await call(routes.cancelRun, { runId: 'ship-2' })).status).toBe(200)
  })

  test('the RunRecord, Awaiting and ProcessRecord it describes have every field of the stored records it answers with', () => {
    // The API hands stored run records over as they are: a field the store has and the document
    // lacks is one a client cannot know of.
    expect(Object.keys(runRecordShape.shape).sort()).toEqual(Object.keys(runRecordSchema.shape).sort())
    expect(Object.keys(awaitingShape.shape).sort()).toEqual(Object.keys(awaitingSchema.shape).sort())
    expect(Object.keys(processShape.shape).sort()).toEqual(Object.keys(processRecordSchema.shape).sort())
  })
})
