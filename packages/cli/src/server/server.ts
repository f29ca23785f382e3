import type { AddressInfo } from 'node:net'
import { InvalidInputError, type Run, RunBusyError, type Runtime, readRunRecord } from '@cohort/core'
import { createAdaptorServer, type WebSocketServerLike } from '@hono/node-server'
import type { Hono } from 'hono'
import { checkHostName, checkOrigin, checkToken, createAccess, createToken, isWildcard } from './access.js'
import type { ServerEnv } from './api.js'
import { createApp } from './app.js'
import { HttpError, type Refusal } from './errors.js'
import { defaultStreamLimits, EventStream } from './event-stream.js'
import { loadInspector } from './inspector-files.js'

export interface ServerOptions {
  runtime: Runtime
  /** 0 (the default) picks a free port. */
  port?: number
  host?: string
  /** The agent a run starts with when a request names none (default: the first agent). */
  root?: string
  /** Called with each run the API starts, before it is reported. */
  onStart?: (runId: string) => Promise<void>
  /**
   * Whether a stored run is this server's to resume (default: every run). A run another launch
   * started (another config) would run on with this server's agents and model.
   */
  hosts?: (runId: string) => Promise<boolean>
  /**
   * The secret every API request and WebSocket carries (`Authorization: Bearer …`, or the cookie
   * the inspector gets from its sign-in URL). Default: a random one, in `server.token`. `false`
   * asks for none: only behind a proxy that authenticates, since any web page can reach the server.
   */
  token?: string | false
  /** Host names the server also answers as, besides localhost, 127.0.0.1, [::1] and `host`. */
  allowHosts?: string[]
  /** Origins (`https://ops.example.com`) whose pages may call the API, besides the server's own. */
  allowOrigins?: string[]
  /** Told of each request refused for who sent it: a foreign Host or Origin (403), no token or a wrong one (401). */
  onRefused?: (refusal: Refusal) => void
  /** Event sockets open at once (default 100). */
  maxSockets?: number
  /** Unsent event bytes one socket may hold before it is closed as too slow (default 4 MiB). */
  maxSocketBufferBytes?: number
  /** Each socket is pinged this often, and dropped if it missed the previous ping (default 30 s). */
  heartbeatMs?: number
}

export interface CohortServer {
  /** `http://host:port/`: the inspector; the API is under `api/`. */
  url: string
  /** What every request carries; null when the server was started with `token: false`. */
  token: string | null
  /** The inspector's address with the token: opening it signs the browser in. */
  inspectorUrl: string
  /** Resumes every stored run still marked running that it hosts (after a restart). */
  resumeInFlight(): Promise<InFlight>
  /**
   * Stops accepting, closes sockets, and shuts its runtime down (`runtime.shutdown`): every run
   * detached, all stored, nothing settles, and the runtime starts nothing more.
   */
  close(): Promise<void>
}

/** The runs in flight a server found at its start: those it resumed, and those it does not host. */
export interface InFlight {
  resumed: string[]
  notHosted: string[]
}

/** The HTTP API, the event WebSocket (`/api/events`) and the inspector, hosting many runs in one process. */
export async function startServer(options: ServerOptions): Promise<CohortServer> {
  const { runtime } = options
  // Every option is checked before the port is taken, so a bad one leaves nothing listening.
  const token = options.token === false ? null : checkToken(options.token ?? createToken())
  const host = options.host ?? '127.0.0.1'
  const allowHosts = (options.allowHosts ?? []).map(checkHostName)
  const allowOrigins = (options.allowOrigins ?? []).map(checkOrigin)
  const root = options.root ?? [...runtime.agents.keys()][0]!
  const events = new EventStream({
    maxSockets: options.maxSockets ?? defaultStreamLimits.maxSockets,
    maxBufferedBytes: options.maxSocketBufferBytes ?? defaultStreamLimits.maxBufferedBytes,
    heartbeatMs: options.heartbeatMs ?? defaultStreamLimits.heartbeatMs,
  })
  const inspector = await loadInspector()
  const live = async (runId: string): Promise<Run> => {
    const held = runtime.get(runId)
    if (held) return held
    // Another launch's run would run on with this server's agents and model.
    if (options.hosts && !(await options.hosts(runId)) && (await readRunRecord(runtime.store, runId)))
      throw new HttpError(
        409,
        `run ${runId} was started by another config or by \`cohort parallel\`: this server runs only its own; resume it with the command that started it`,
      )
    return runtime.resume(runId)
  }

  // The app needs the port (its own origins, its cookie), known once listening; no request comes before.
  let app: Hono<ServerEnv> | undefined
  const server = createAdaptorServer({
    fetch: (request, env) => app!.fetch(request, env),
    // The adapter's type spells `noServer?: boolean` without `| undefined`, which ws's does not match
    // under exactOptionalPropertyTypes; the object is the one it expects.
    websocket: { server: events.wss as WebSocketServerLike },
  })
  const where = `${host}:${options.port ?? 0}`
  await new Promise<void>((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) => {
      const reason = error.code === 'EADDRINUSE' ? 'the port is already in use' : error.message
      reject(new InvalidInputError(`cannot listen on ${where}: ${reason}`))
    })
    server.listen(options.port ?? 0, host, () => resolve())
  })
  const address = server.address() as AddressInfo
  const access = createAccess({
    token,
    port: address.port,
    host,
    allowHosts,
    allowOrigins,
  })
  // Every run of the runtime is streamed: those started here, and those the host app starts itself.
  const offEvents = runtime.on('event', (event) => events.broadcast(event))
  app = createApp({
    access,
    allowOrigins,
    inspector,
    api: { runtime, root, events, live, onStart: options.onStart },
    onRefused: options.onRefused,
  })

  // On every interface, the link names this machine's loopback: a wildcard is no Host it answers as.
  const reachable = isWildcard(address.address)
    ? address.family === 'IPv6'
      ? '::1'
      : '127.0.0.1'
    : address.address
  const shown = address.family === 'IPv6' ? `[${reachable}]` : reachable
  const retries = new Set<NodeJS.Timeout>()
  const retryLater = (runId: string, until: number) => {
    const timer = setTimeout(
      () => {
        retries.delete(timer)
        live(runId).then(
          () => process.emitWarning(`resumed run ${runId}: the process that held it let it lapse`),
          (error: unknown) =>
            process.emitWarning(`could not resume run ${runId}: ${(error as Error).message}`),
        )
      },
      Math.max(0, until - Date.now()) + 1_000,
    )
    timer.unref()
    retries.add(timer)
  }
  const url = `http://${shown}:${address.port}/`
  return {
    url,
    token,
    inspectorUrl: token === null ? url : `${url}?token=${encodeURIComponent(token)}`,
    async resumeInFlight() {
      const resumed: string[] = []
      const notHosted: string[] = []
      for (const record of await runtime.store.listRuns({ status: 'running' })) {
        if (runtime.get(record.id)) continue
        if (options.hosts && !(await options.hosts(record.id))) {
          notHosted.push(record.id)
          continue
        }
        try {
          await live(record.id)
          resumed.push(record.id)
        } catch (error) {
          process.emitWarning(`could not resume run ${record.id}: ${(error as Error).message}`)
          // Held by a process that may be gone (another machine's, which cannot be asked): tried
          // again once its claim has lapsed; one that still runs it will have renewed it.
          if (error instanceof RunBusyError) retryLater(record.id, error.until)
        }
      }
      return { resumed, notHosted }
    },
    async close() {
      for (const timer of retries) clearTimeout(timer)
      offEvents()
      await events.close()
      const closed = new Promise<void>((resolve) => server.close(() => resolve()))
      if ('closeAllConnections' in server) server.closeAllConnections()
      await runtime.shutdown()
      await closed
    },
  }
}
