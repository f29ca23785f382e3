import type { IncomingMessage } from 'node:http'
import type { Socket } from 'node:net'
import type { CohortEvent } from '@cohort/core'
import { WebSocket, WebSocketServer } from 'ws'

export interface EventStreamLimits {
  /** Sockets open (or opening) at once; one more is refused with 503. */
  maxSockets: number
  /** Unsent bytes a socket may hold; past them it is closed as too slow (1008). */
  maxBufferedBytes: number
  /** How often each socket is pinged; one that has not answered the previous ping is dropped. */
  heartbeatMs: number
}

export const defaultStreamLimits: EventStreamLimits = {
  maxSockets: 100,
  maxBufferedBytes: 4 * 1024 * 1024,
  heartbeatMs: 30_000,
}

interface Client {
  socket: WebSocket
  runId: string | null
  alive: boolean
}

/** Close codes a client sees (RFC 6455): 1008 policy violation, 1001 going away. */
export const tooSlowCode = 1008

/**
 * Every event of every run, to each socket that asked (all runs, or one with `?runId=`). No client
 * can make the server hold more than a bounded amount for it: a socket that does not read its events
 * is closed, a dead one is dropped, and sockets at once are counted.
 */
export class EventStream {
  /** Attached to the HTTP server's upgrades by `@hono/node-server`, which hands it accepted sockets. */
  readonly wss = new WebSocketServer({ noServer: true, maxPayload: 4096 })
  readonly #clients = new Set<Client>()
  #open = 0
  readonly #reserved = new WeakSet<Socket>()
  readonly #limits: EventStreamLimits
  readonly #heartbeat: NodeJS.Timeout
  #closing = false

  constructor(limits: EventStreamLimits) {
    this.#limits = limits
    this.wss.on('connection', (socket, request) => this.#accept(socket, request))
    this.#heartbeat = setInterval(() => this.#sweep(), limits.heartbeatMs)
    this.#heartbeat.unref()
  }

  /**
   * Takes a place for the socket an upgrade request came on, until that connection closes (whether the
   * handshake then succeeds or not); false when every place is taken.
   */
  reserve(request: IncomingMessage): boolean {
    const connection = request.socket
    // One place a connection: upgrade requests one after another on a kept-alive one hold one.
    if (this.#reserved.has(connection)) return true
    if (this.#open >= this.#limits.maxSockets) return false
    this.#open++
    this.#reserved.add(connection)
    connection.once('close', () => this.#open--)
    return true
  }

  get limits(): EventStreamLimits {
    return this.#limits
  }

  broadcast(event: CohortEvent): void {
    if (this.#clients.size === 0) return
    const message = JSON.stringify({ runId: event.runId, event }, jsonReplacer)
    for (const client of this.#clients) {
      if (client.runId !== null && client.runId !== event.runId) continue
      const { socket } = client
      if (socket.readyState !== WebSocket.OPEN) continue
      if (socket.bufferedAmount > this.#limits.maxBufferedBytes) {
        // Close, not terminate: a client that reads again finds every event it was sent, then why it ends.
        this.#clients.delete(client)
        socket.close(tooSlowCode, `too slow: over ${this.#limits.maxBufferedBytes} bytes of events unread`)
        continue
      }
      socket.send(message)
    }
  }

  /** Says goodbye to every socket; one that cannot take it (it does not read) is cut a second later. */
  async close(): Promise<void> {
    this.#closing = true
    clearInterval(this.#heartbeat)
    this.#clients.clear()
    const sockets = [...this.wss.clients]
    for (const socket of sockets) socket.close(1001, 'server shutting down')
    const closed = sockets.map((socket) => new Promise((resolve) => socket.once('close', resolve)))
    const grace = new Promise((resolve) => setTimeout(resolve, 1000).unref())
    if ((await Promise.race([Promise.all(closed), grace.then(() => 'late')])) === 'late') {
      for (const socket of this.wss.clients) socket.terminate()
    }
    this.wss.close()
  }

  #accept(socket: WebSocket, request: IncomingMessage): void {
    // Opened while the server shuts down: told so at once, as the sockets before it were.
    if (this.#closing) return void socket.close(1001, 'server shutting down')
    const runId = new URL(request.url ?? '/', 'http://localhost').searchParams.get('runId')
    const client: Client = { socket, runId, alive: true }
    this.#clients.add(client)
    socket.on('pong', () => {
      client.alive = true
    })
    socket.on('close', () => this.#clients.delete(client))
    socket.on('error', () => this.#clients.delete(client))
  }

  #sweep(): void {
    for (const client of this.#clients) {
      if (!client.alive) {
        this.#clients.delete(client)
        client.socket.terminate()
        continue
      }
      client.alive = false
      client.socket.ping()
    }
  }
}

/** Values a run may hold that JSON cannot (BigInt) are sent as text rather than failing the response. */
export function jsonReplacer(_: string, value: unknown): unknown {
  return typeof value === 'bigint' ? value.toString() : value
}
