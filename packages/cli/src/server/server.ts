import { readFile } from 'node:fs/promises'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import {
  CohortError,
  type CohortEvent,
  InvalidInputError,
  isValidRunId,
  type Run,
  type RunFilter,
  type RunStatus,
  type Runtime,
  readAgentRecord,
  readRunRecord,
} from '@cohort/core'
import { type WebSocket, WebSocketServer } from 'ws'
import { z } from 'zod'
import { agentDetail, runView } from '../views.js'

export interface ServerOptions {
  runtime: Runtime
  /** 0 (the default) picks a free port. */
  port?: number
  host?: string
  /** The agent a run starts with when a request names none (default: the first agent). */
  root?: string
  /** Called with each run the API starts, before it is reported. */
  onStart?: (runId: string) => Promise<void>
}

export interface CohortServer {
  /** `http://host:port/`: the inspector; the API is under `api/`. */
  url: string
  /** Resumes every stored run still marked running (after a restart); returns their ids. */
  resumeInFlight(): Promise<string[]>
  /** Stops accepting, closes sockets, and detaches every run: all is stored, nothing settles. */
  close(): Promise<void>
}

const maxBodyBytes = 1_000_000

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message)
  }
}

const startSchema = z.strictObject({
  agent: z.string().min(1).optional(),
  task: z.string().min(1, 'task must be a non-empty string').max(100_000),
  runId: z.string().optional(),
})
const approveSchema = z.strictObject({ callId: z.string().min(1) })
const rejectSchema = z.strictObject({ callId: z.string().min(1), reason: z.string().optional() })
const agentResumeSchema = z.strictObject({ payload: z.unknown().optional() })
const messageSchema = z.strictObject({ text: z.string().min(1, 'text must be a non-empty string') })

const runStatuses: RunStatus[] = ['running', 'completed', 'failed', 'cancelled']

/** The HTTP API, the event WebSocket (`/api/events`) and the inspector, hosting many runs in one process. */
export async function startServer(options: ServerOptions): Promise<CohortServer> {
  const { runtime } = options
  const root = options.root ?? [...runtime.agents.keys()][0]!
  const sockets = new Set<{ socket: WebSocket; runId: string | null }>()
  const watched = new WeakSet<Run>()

  const broadcast = (event: CohortEvent) => {
    if (sockets.size === 0) return
    const message = JSON.stringify({ runId: event.runId, event }, jsonReplacer)
    for (const client of sockets) {
      if (client.runId !== null && client.runId !== event.runId) continue
      if (client.socket.readyState === client.socket.OPEN) client.socket.send(message)
    }
  }
  const watch = (run: Run) => {
    if (watched.has(run)) return run
    watched.add(run)
    run.on('event', broadcast)
    return run
  }
  /** A run of this process, or the stored one brought back to life. */
  const live = async (runId: string): Promise<Run> => {
    const run = runtime.get(runId) ?? (await runtime.resume(runId))
    return watch(run)
  }

  const routes: Route[] = [
    route('GET', '/', async (_, res) => {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' })
      res.end(await readFile(new URL('../../inspector/index.html', import.meta.url)))
    }),
    route('GET', '/api/runs', async (req) => ({ runs: await runtime.store.listRuns(listFilter(req)) })),
    route('POST', '/api/runs', async (req) => {
      const body = parse(startSchema, await readJson(req))
      const agent = body.agent ?? root
      if (body.runId !== undefined) {
        checkRunId(body.runId)
        if (runtime.get(body.runId) || (await runtime.store.loadRun(body.runId))) {
          throw new HttpError(409, `run ${body.runId} already exists`)
        }
      }
      const run = watch(runtime.start(agent, body.task, body.runId ? { runId: body.runId } : {}))
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
      await options.onStart?.(run.id)
      return [201, { runId: run.id, status: run.status }]
    }),
    route('GET', '/api/runs/:runId', async (_, __, { runId }) => {
      const stored = await runtime.store.loadRun(runId!)
      if (!stored) throw notFound(runId!)
      const run = runtime.get(runId!)
      return { ...runView(stored), ...(run && { metrics: run.metrics() }) }
    }),
    route('GET', '/api/runs/:runId/agents/:agentId', async (_, __, { runId, agentId }) => {
      const agent = await readAgentRecord(runtime.store, runId!, agentId!)
      if (!agent) {
        if (!(await readRunRecord(runtime.store, runId!))) throw notFound(runId!)
        throw new HttpError(404, `run ${runId} has no agent "${agentId}"`)
      }
      return agentDetail(agent)
    }),
    route('POST', '/api/runs/:runId/resume', async (_, __, { runId }) => {
      const run = await liveRunning(runId!)
      return [202, { runId: run.id, status: run.status }]
    }),
    route('POST', '/api/runs/:runId/cancel', async (_, __, { runId }) => {
      const run = await liveRunning(runId!)
      await run.cancel('cancelled through the API')
      return { runId: run.id, status: run.status }
    }),
    route('POST', '/api/runs/:runId/approve', async (req, _, { runId }) => {
      const body = parse(approveSchema, await readJson(req))
      const run = await liveRunning(runId!)
      run.approve(body.callId)
      return [202, { runId, approved: body.callId }]
    }),
    route('POST', '/api/runs/:runId/reject', async (req, _, { runId }) => {
      const body = parse(rejectSchema, await readJson(req))
      const run = await liveRunning(runId!)
      run.reject(body.callId, body.reason)
      return [202, { runId, rejected: body.callId }]
    }),
    route('POST', '/api/runs/:runId/agents/:agentId/resume', async (req, _, { runId, agentId }) => {
      const body = parse(agentResumeSchema, await readJson(req))
      const run = await liveRunning(runId!)
      run.resume(agentId!, body.payload)
      return [202, { runId, agentId }]
    }),
    route('POST', '/api/runs/:runId/agents/:agentId/messages', async (req, _, { runId, agentId }) => {
      const body = parse(messageSchema, await readJson(req))
      const run = await liveRunning(runId!)
      run.send(agentId!, body.text)
      return [202, { runId, agentId }]
    }),
  ]

  /** A run still running, live in this server; only its run record is read to tell. */
  async function liveRunning(runId: string): Promise<Run> {
    const record = await readRunRecord(runtime.store, runId)
    if (!record) throw notFound(runId)
    if (record.status !== 'running') throw new HttpError(409, `run ${runId} has already ${record.status}`)
    return live(runId)
  }

  const server = createServer((req, res) => {
    void handle(routes, req, res)
  })
  const wss = new WebSocketServer({ noServer: true })
  server.on('upgrade', (req, socket, head) => {
    const url = new URL(req.url ?? '/', 'http://localhost')
    const runId = url.searchParams.get('runId')
    if (url.pathname !== '/api/events' || (runId !== null && !isValidRunId(runId))) {
      socket.end('HTTP/1.1 400 Bad Request\r\n\r\n')
      return
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      const client = { socket: ws, runId }
      sockets.add(client)
      ws.on('close', () => sockets.delete(client))
      ws.on('error', () => sockets.delete(client))
    })
  })
  const where = `${options.host ?? '127.0.0.1'}:${options.port ?? 0}`
  await new Promise<void>((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) => {
      const reason = error.code === 'EADDRINUSE' ? 'the port is already in use' : error.message
      reject(new InvalidInputError(`cannot listen on ${where}: ${reason}`))
    })
    server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => resolve())
  })
  const address = server.address() as AddressInfo
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address

  return {
    url: `http://${host}:${address.port}/`,
    async resumeInFlight() {
      const resumed: string[] = []
      for (const record of await runtime.store.listRuns({ status: 'running' })) {
        if (runtime.get(record.id)) continue
        try {
          await live(record.id)
          resumed.push(record.id)
        } catch (error) {
          process.emitWarning(`could not resume run ${record.id}: ${(error as Error).message}`)
        }
      }
      return resumed
    },
    async close() {
      for (const client of sockets) client.socket.close(1001, 'server shutting down')
      wss.close()
      const closed = new Promise<void>((resolve) => server.close(() => resolve()))
      server.closeAllConnections()
      await runtime.shutdown()
      await closed
    },
  }
}

type Params = Record<string, string | undefined>
type Handler = (req: IncomingMessage, res: ServerResponse, params: Params) => Promise<unknown>
interface Route {
  method: string
  pattern: RegExp
  names: string[]
  handler: Handler
}

function route(method: string, path: string, handler: Handler): Route {
  const names: string[] = []
  const pattern = new RegExp(
    `^${path.replace(/:([a-zA-Z]+)/g, (_, name: string) => {
      names.push(name)
      return '([^/]+)'
    })}/?$`,
  )
  return { method, pattern, names, handler }
}

async function handle(routes: Route[], req: IncomingMessage, res: ServerResponse): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://localhost')
  try {
    const matches = routes.filter((r) => r.pattern.test(url.pathname))
    if (matches.length === 0) throw new HttpError(404, `no such endpoint: ${url.pathname}`)
    const match = matches.find((r) => r.method === req.method)
    if (!match) {
      res.setHeader('allow', matches.map((r) => r.method).join(', '))
      throw new HttpError(405, `${req.method} is not allowed on ${url.pathname}`)
    }
    const values = match.pattern.exec(url.pathname)!.slice(1)
    const params: Params = {}
    for (const [index, name] of match.names.entries()) {
      const value = decodeURIComponent(values[index]!)
      if (name === 'runId') checkRunId(value)
      params[name] = value
    }
    const outcome = await match.handler(req, res, params)
    if (res.headersSent) return
    const [status, body] = Array.isArray(outcome) ? outcome : [200, outcome]
    sendJson(res, status as number, body)
  } catch (error) {
    const [status, message] = describeError(error)
    if (!res.headersSent) sendJson(res, status, { error: message })
    else res.end()
  }
}

function describeError(error: unknown): [number, string] {
  if (error instanceof HttpError) return [error.status, error.message]
  if (error instanceof CohortError) {
    if (error.code === 'RUN_NOT_FOUND') return [404, error.message]
    if (error.code === 'INVALID_INPUT') return [400, error.message]
    if (error.code === 'SNAPSHOT_ERROR') return [422, error.message]
    return [500, error.message]
  }
  return [500, `internal error: ${(error as Error)?.message ?? String(error)}`]
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' })
  res.end(JSON.stringify(body, jsonReplacer))
}

/** Values a run may hold that JSON cannot (BigInt) are sent as text rather than failing the response. */
function jsonReplacer(_: string, value: unknown): unknown {
  return typeof value === 'bigint' ? value.toString() : value
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  const type = req.headers['content-type'] ?? ''
  if (!type.includes('application/json')) {
    throw new HttpError(415, `expected a JSON body (content-type: application/json), got "${type || 'none'}"`)
  }
  const parts: Buffer[] = []
  let size = 0
  for await (const part of req) {
    size += (part as Buffer).length
    // The rest of an oversized body is read and dropped, so the client gets the 413 rather than a reset.
    if (size <= maxBodyBytes) parts.push(part as Buffer)
    else if (size > 16 * maxBodyBytes) break
  }
  if (size > maxBodyBytes) throw new HttpError(413, `body larger than ${maxBodyBytes} bytes`)
  const text = Buffer.concat(parts).toString('utf8')
  try {
    return JSON.parse(text || 'null')
  } catch (error) {
    throw new HttpError(400, `body is not JSON: ${(error as Error).message}`)
  }
}

function parse<T>(schema: z.ZodType<T>, value: unknown): T {
  const result = schema.safeParse(value)
  if (result.success) return result.data
  const issue = result.error.issues[0]!
  const where = issue.path.length > 0 ? `${issue.path.join('.')}: ` : ''
  throw new HttpError(400, `invalid body: ${where}${issue.message}`)
}

function checkRunId(runId: string): void {
  if (!isValidRunId(runId)) {
    throw new HttpError(400, `invalid run id "${runId}": expected 1-64 letters, digits, "_" or "-"`)
  }
}

function notFound(runId: string): HttpError {
  return new HttpError(404, `run ${runId} is not in the store`)
}

function listFilter(req: IncomingMessage): RunFilter {
  const params = new URL(req.url ?? '/', 'http://localhost').searchParams
  const filter: RunFilter = { limit: 50 }
  const status = params.get('status')
  if (status) {
    const list = status.split(',')
    const bad = list.find((s) => !runStatuses.includes(s as RunStatus))
    if (bad !== undefined) throw new HttpError(400, `status "${bad}" is not one of ${runStatuses.join(', ')}`)
    filter.status = list as RunStatus[]
  }
  for (const name of ['limit', 'offset', 'since', 'until'] as const) {
    const text = params.get(name)
    if (text === null) continue
    if (!/^\d{1,15}$/.test(text))
      throw new HttpError(400, `${name} must be a non-negative integer, got "${text}"`)
    filter[name] = Number(text)
  }
  if (filter.limit !== undefined && (filter.limit < 1 || filter.limit > 1_000)) {
    throw new HttpError(400, `limit must be between 1 and 1000, got ${filter.limit}`)
  }
  return filter
}
