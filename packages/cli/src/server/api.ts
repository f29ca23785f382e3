import { type Run, type RunRecord, type Runtime, readAgentRecord, readRunRecord } from '@cohort/core'
import type { HttpBindings } from '@hono/node-server'
import { upgradeWebSocket } from '@hono/node-server'
import type { OpenAPIHono } from '@hono/zod-openapi'
import type { Context } from 'hono'
import { agentDetail, runEnded, runView } from '../views.js'
import { routes } from './api-routes.js'
import { HttpError } from './errors.js'
import { type EventStream, jsonReplacer } from './event-stream.js'

export type ServerEnv = { Bindings: HttpBindings }

/** What the handlers need of the server around them. */
export interface ApiHost {
  runtime: Runtime
  /** The agent a run starts with when a request names none. */
  root: string
  events: EventStream
  /** A run of this process, or the stored one brought back to life. */
  live(runId: string): Promise<Run>
  onStart?: ((runId: string) => Promise<void>) | undefined
}

export function registerApi(app: OpenAPIHono<ServerEnv>, host: ApiHost): void {
  const { runtime } = host

  /** A run still running, live in this server; only its run record is read to tell. */
  async function liveRunning(runId: string): Promise<Run> {
    const record = await readRunRecord(runtime.store, runId)
    if (!record) throw notFound(runId)
    if (record.status !== 'running') throw new HttpError(409, runEnded(runId, record.status))
    return host.live(runId)
  }

  app.openapi(routes.listRuns, async (c) => {
    const { status, limit = 50, offset, since, until } = c.req.valid('query')
    const filter = { limit, ...defined({ status, offset, since, until }) }
    const runs = await runtime.store.listRuns(filter)
    return json(c, { runs: runs.map((run) => ({ ...run, ...awaitingOf(run) })) }, 200)
  })

  /**
   * How many of the run's agents wait on a person. The run record does not say (it is written at
   * a run's start, stop and end), and reading every agent of every listed run would make the list
   * cost as much as opening each run: a run this server runs is asked in memory instead. A running
   * run it does not hold is left unknown.
   */
  function awaitingOf(run: RunRecord): { agentsAwaiting?: number } {
    if (run.status !== 'running') return { agentsAwaiting: 0 }
    const live = runtime.get(run.id)
    return live ? { agentsAwaiting: live.awaiting().length } : {}
  }

  app.openapi(routes.startRun, async (c) => {
    const body = c.req.valid('json')
    if (body.runId !== undefined) {
      const taken = () => new HttpError(409, `run ${body.runId} already exists`)
      if (runtime.get(body.runId) || (await readRunRecord(runtime.store, body.runId))) throw taken()
      // Another request may have started it while the store answered.
      if (runtime.get(body.runId)) throw taken()
    }
    const run = runtime.start(body.agent ?? host.root, body.task, body.runId ? { runId: body.runId } : {})
    // Answer once the run is stored, so a client that lists runs next sees it.
    await new Promise<void>((resolve) => {
      const off = run.on('run.started', () => {
        off()
        resolve()
      })
      run.result.then(
        () => resolve(),
        () => resolve(),
      )
    })
    await host.onStart?.(run.id)
    return c.json({ runId: run.id, status: run.status }, 201)
  })

  app.openapi(routes.getRun, async (c) => {
    const { runId } = c.req.valid('param')
    const stored = await runtime.store.loadRun(runId)
    if (!stored) throw notFound(runId)
    const run = runtime.get(runId)
    return json(c, { ...runView(stored), ...(run && { metrics: run.metrics() }) }, 200)
  })

  app.openapi(routes.getAgent, async (c) => {
    const { runId, agentId } = c.req.valid('param')
    const agent = await readAgentRecord(runtime.store, runId, agentId)
    if (!agent) {
      if (!(await readRunRecord(runtime.store, runId))) throw notFound(runId)
      throw new HttpError(404, `run ${runId} has no agent "${agentId.slice(0, 80)}"`)
    }
    return json(c, agentDetail(agent), 200)
  })

  app.openapi(routes.resumeRun, async (c) => {
    const run = await liveRunning(c.req.valid('param').runId)
    return c.json({ runId: run.id, status: run.status }, 202)
  })

  app.openapi(routes.cancelRun, async (c) => {
    const run = await liveRunning(c.req.valid('param').runId)
    await run.cancel('cancelled through the API')
    return c.json({ runId: run.id, status: run.status }, 200)
  })

  app.openapi(routes.approve, async (c) => {
    const { runId, agentId } = c.req.valid('param')
    const { callId } = c.req.valid('json')
    const run = await liveRunning(runId)
    await run.approve(agentId, callId)
    return c.json({ runId, agentId, approved: callId }, 202)
  })

  app.openapi(routes.reject, async (c) => {
    const { runId, agentId } = c.req.valid('param')
    const { callId, reason } = c.req.valid('json')
    const run = await liveRunning(runId)
    await run.reject(agentId, callId, reason)
    return c.json({ runId, agentId, rejected: callId }, 202)
  })

  app.openapi(routes.resumeAgent, async (c) => {
    const { runId, agentId } = c.req.valid('param')
    const { payload } = c.req.valid('json')
    const run = await liveRunning(runId)
    await run.resume(agentId, payload)
    return c.json({ runId, agentId }, 202)
  })

  app.openapi(routes.sendMessage, async (c) => {
    const { runId, agentId } = c.req.valid('param')
    const { text } = c.req.valid('json')
    const run = await liveRunning(runId)
    // Answered once the message is stored: a 202 the server then loses in a crash would be a lie.
    await run.send(agentId, text)
    return c.json({ runId, agentId }, 202)
  })

  app.openapi(routes.events, async (c) => {
    // A WebSocket handshake asks for both; a request with only one of them is plain HTTP.
    const upgrading =
      c.req.header('upgrade')?.toLowerCase() === 'websocket' &&
      /(^|,)\s*upgrade\s*(,|$)/i.test(c.req.header('connection') ?? '')
    if (!upgrading) {
      throw new HttpError(426, 'this endpoint is a WebSocket: connect with ws://…/api/events', {
        upgrade: 'websocket',
      })
    }
    if (!host.events.reserve(c.env.incoming)) {
      throw new HttpError(
        503,
        `${host.events.limits.maxSockets} event sockets are open, the most this server takes; try again later`,
        { 'retry-after': '5' },
      )
    }
    // The socket itself is taken over in EventStream, which `@hono/node-server` hands it to.
    return upgradeWebSocket(c, {})
  })
}

/**
 * `c.json`, except that a value JSON cannot hold (a BigInt in a result) is sent as text. The usual
 * case costs one stringify; only a body that fails is written again with the replacer.
 */
function json<T, S extends 200 | 201 | 202>(c: Context<ServerEnv>, body: T, status: S) {
  try {
    return c.json(body, status)
  } catch (error) {
    if (!(error instanceof TypeError)) throw error
    return c.json(JSON.parse(JSON.stringify(body, jsonReplacer)) as T, status)
  }
}

/** The object without its undefined fields (exact optional properties take no `undefined`). */
function defined<T extends object>(fields: T): { [K in keyof T]?: Exclude<T[K], undefined> } {
  return Object.fromEntries(Object.entries(fields).filter(([, value]) => value !== undefined)) as {
    [K in keyof T]?: Exclude<T[K], undefined>
  }
}

function notFound(runId: string): HttpError {
  return new HttpError(404, `run ${runId} is not in the store`)
}
