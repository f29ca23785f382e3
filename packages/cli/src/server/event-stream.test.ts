import type { IncomingMessage } from 'node:http'
import { expect, test } from 'vitest'
import type { WebSocket } from 'ws'
import { EventStream } from './event-stream.js'

test('a socket that opens while the stream closes is told the server shuts down (1001), not cut', async () => {
  const stream = new EventStream({ maxSockets: 4, maxBufferedBytes: 1_000, heartbeatMs: 60_000 })
  const closing = stream.close()
  const closed: [number, string][] = []
  const late = { close: (code: number, reason: string) => closed.push([code, reason]), on: () => late }
  stream.wss.emit('connection', late as unknown as WebSocket, { url: '/api/events' } as IncomingMessage)
  expect(closed).toEqual([[1001, 'server shutting down']])
  await closing
})
