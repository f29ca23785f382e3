// The HTTP API's routes as data: path, request schemas and answers. Requests are validated with
// these schemas and `GET /api/openapi.json` is generated from them; the handlers are in api.ts.
import { isValidAgentId, isValidRunId, type RunStatus } from '@cohort/core'
import { createRoute, z } from '@hono/zod-openapi'
import { agentDetailShape, errorShape, runListShape, runStateShape, runViewShape } from './api-shapes.js'
import { limitBody, maxBodyBytes, requireJson } from './json-body.js'

const runStatuses: RunStatus[] = ['running', 'completed', 'failed', 'cancelled']

export const runIdSchema = z.string().refine(isValidRunId, {
  error: (issue) =>
    `invalid run id "${String(issue.input).slice(0, 80)}": expected 1-64 letters, digits, "_" or "-"`,
})
const runParams = z.object({
  runId: runIdSchema.openapi({ param: { name: 'runId', in: 'path' }, example: 'ship-1' }),
})
const agentParams = runParams.extend({
  agentId: z
    .string()
    .refine(isValidAgentId, {
      error: (issue) =>
        `invalid agent id "${String(issue.input).slice(0, 80)}": expected ids of letters, digits, "_" or "-" joined by dots`,
    })
    .openapi({ param: { name: 'agentId', in: 'path' }, example: 'lead.prices' }),
})

function count(name: string) {
  return z
    .string()
    .regex(/^\d{1,15}$/, {
      error: (issue) => `${name} must be a non-negative integer, got "${String(issue.input).slice(0, 80)}"`,
    })
    .transform(Number)
    .optional()
    .openapi({ param: { name, in: 'query' } })
}

/** Unknown parameters are refused: a misspelt filter (`?stauts=`, `?runid=`) would otherwise widen the answer to everything. */
function strictQuery<S extends z.ZodRawShape>(shape: S) {
  const known = Object.keys(shape).join(', ')
  return z.strictObject(shape, {
    error: (issue) =>
      issue.code === 'unrecognized_keys'
        ? `unknown query parameter${issue.keys.length === 1 ? '' : 's'} ${issue.keys.map((key) => `"${key.slice(0, 80)}"`).join(', ')}; expected ${known}`
        : undefined,
  })
}

const listQuery = strictQuery({
  status: z
    .string()
    .transform((text, ctx) => {
      const list = text.split(',')
      const bad = list.find((status) => !runStatuses.includes(status as RunStatus))
      if (bad === undefined) return list as RunStatus[]
      ctx.issues.push({
        code: 'custom',
        input: text,
        message: `status "${bad.slice(0, 80)}" is not one of ${runStatuses.join(', ')}`,
      })
      return z.NEVER
    })
    .optional()
    .openapi({ param: { name: 'status', in: 'query' }, example: 'running,completed' }),
  limit: count('limit').refine((limit) => limit === undefined || (limit >= 1 && limit <= 1_000), {
    error: (issue) => `limit must be between 1 and 1000, got ${String(issue.input)}`,
  }),
  offset: count('offset'),
  since: count('since'),
  until: count('until'),
})

const eventsQuery = strictQuery({
  runId: runIdSchema.optional().openapi({ param: { name: 'runId', in: 'query' } }),
})

export const startBody = z
  .strictObject({
    agent: z.string().min(1).optional().openapi({ description: 'default: the root agent' }),
    task: z.string().min(1, 'task must be a non-empty string').max(100_000),
    runId: runIdSchema.optional(),
  })
  .openapi('StartRun')
const callId = z
  .string()
  .min(1, 'callId must be a non-empty string')
  .openapi({ description: 'the call the agent waits on (its `awaiting.callId`)', example: 'call_0' })
const approveBody = z.strictObject({ callId }).openapi('Approve')
const rejectBody = z.strictObject({ callId, reason: z.string().optional() }).openapi('Reject')
const agentResumeBody = z.strictObject({ payload: z.unknown().optional() }).openapi('AgentResume')
const messageBody = z
  .strictObject({ text: z.string().min(1, 'text must be a non-empty string') })
  .openapi('Message')

const refusals = {
  400: 'a body or parameter that is not what is expected (the message names the field)',
  401: 'no token, or a wrong one',
  403: 'a Host the server does not answer as, or a page of another origin',
  404: 'an unknown run or agent',
  409: 'a run that has already ended, a run id that is taken, or a run another process runs (Retry-After)',
  413: `a body over ${maxBodyBytes} bytes`,
  415: 'a body that is not application/json',
  422: 'a stored record that cannot be read',
  500: 'the store failed to keep what was asked (the message names the store error)',
  503: 'every event socket is taken',
} as const
type Refusal = keyof typeof refusals

function refused<C extends Refusal>(...codes: C[]) {
  const content = { 'application/json': { schema: errorShape } }
  const answers = {} as { [K in C]: { description: string; content: typeof content } }
  for (const code of codes) answers[code] = { description: refusals[code], content }
  return answers
}

function answer<S extends z.ZodType>(description: string, schema: S) {
  return { description, content: { 'application/json': { schema } } }
}

function jsonBody<S extends z.ZodType>(schema: S) {
  return { body: { required: true, content: { 'application/json': { schema } } } }
}

// Bodies are bounded and typed before the validator reads them.
const bodyChecks = [limitBody, requireJson]
const ack = <S extends z.ZodRawShape>(shape: S) => z.object({ runId: z.string(), ...shape })

export const routes = {
  listRuns: createRoute({
    method: 'get',
    path: '/api/runs',
    summary: 'Stored runs, newest first',
    request: { query: listQuery },
    responses: { 200: answer('the runs', runListShape), ...refused(400, 401, 403) },
  }),
  startRun: createRoute({
    method: 'post',
    path: '/api/runs',
    summary: 'Start a run; answers once it is stored',
    middleware: bodyChecks,
    request: jsonBody(startBody),
    responses: {
      201: answer('the run, stored and running', runStateShape),
      ...refused(400, 401, 403, 409, 413, 415, 422),
    },
  }),
  getRun: createRoute({
    method: 'get',
    path: '/api/runs/{runId}',
    summary: 'A run and its agents in tree order',
    request: { params: runParams },
    responses: { 200: answer('the run', runViewShape), ...refused(400, 401, 403, 404, 422) },
  }),
  getAgent: createRoute({
    method: 'get',
    path: '/api/runs/{runId}/agents/{agentId}',
    summary: 'One agent and its messages',
    request: { params: agentParams },
    responses: { 200: answer('the agent', agentDetailShape), ...refused(400, 401, 403, 404, 422) },
  }),
  resumeRun: createRoute({
    method: 'post',
    path: '/api/runs/{runId}/resume',
    summary: 'Continue a stored run that is still running',
    request: { params: runParams },
    responses: { 202: answer('continuing', runStateShape), ...refused(400, 401, 403, 404, 409, 422) },
  }),
  cancelRun: createRoute({
    method: 'post',
    path: '/api/runs/{runId}/cancel',
    summary: 'Cancel a run and every agent in it',
    request: { params: runParams },
    responses: { 200: answer('cancelled', runStateShape), ...refused(400, 401, 403, 404, 409, 422) },
  }),
  // Under the agent: a native call id (`call_0`) repeats across agents, so it alone names no call.
  approve: createRoute({
    method: 'post',
    path: '/api/runs/{runId}/agents/{agentId}/approve',
    summary: 'Approve the tool call the agent waits on',
    middleware: bodyChecks,
    request: { params: agentParams, ...jsonBody(approveBody) },
    responses: {
      202: answer('stored; the call runs', ack({ agentId: z.string(), approved: z.string() })),
      ...refused(400, 401, 403, 404, 409, 413, 415, 422, 500),
    },
  }),
  reject: createRoute({
    method: 'post',
    path: '/api/runs/{runId}/agents/{agentId}/reject',
    summary: 'Refuse the tool call the agent waits on; the agent is told why',
    middleware: bodyChecks,
    request: { params: agentParams, ...jsonBody(rejectBody) },
    responses: {
      202: answer('stored; the agent is told', ack({ agentId: z.string(), rejected: z.string() })),
      ...refused(400, 401, 403, 404, 409, 413, 415, 422, 500),
    },
  }),
  resumeAgent: createRoute({
    method: 'post',
    path: '/api/runs/{runId}/agents/{agentId}/resume',
    summary: 'Answer an agent waiting for input (ctx.suspend), or approve the call it waits on',
    middleware: bodyChecks,
    request: { params: agentParams, ...jsonBody(agentResumeBody) },
    responses: {
      202: answer('stored; the agent goes on', ack({ agentId: z.string() })),
      ...refused(400, 401, 403, 404, 409, 413, 415, 422, 500),
    },
  }),
  sendMessage: createRoute({
    method: 'post',
    path: '/api/runs/{runId}/agents/{agentId}/messages',
    summary: "Deliver a message into the agent's next model turn",
    middleware: bodyChecks,
    request: { params: agentParams, ...jsonBody(messageBody) },
    responses: {
      202: answer('delivered and stored', ack({ agentId: z.string() })),
      ...refused(400, 401, 403, 404, 409, 413, 415, 422, 500),
    },
  }),
  events: createRoute({
    method: 'get',
    path: '/api/events',
    summary: 'WebSocket: one JSON message { runId, event } per event, of every run or of ?runId=',
    request: { query: eventsQuery },
    responses: {
      101: { description: 'the socket is open' },
      426: answer('not a WebSocket upgrade', errorShape),
      ...refused(400, 401, 403, 503),
    },
  }),
}
