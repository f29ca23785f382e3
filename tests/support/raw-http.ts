// HTTP and WebSocket clients with full control of what is sent (Host, Origin, Cookie, a body's
// framing) and of what is read (a socket that stops reading), for tests that play the attacker.
import { type IncomingHttpHeaders, request } from 'node:http'
import net from 'node:net'

export interface Answer {
  status: number
  body: { error?: string } & Record<string, unknown>
}

export interface RawRequest {
  method?: string
  path: string
  headers?: Record<string, string>
  /** Sent with its length. */
  body?: string
  /** Sent one after the other without a length (chunked). */
  chunks?: Buffer[]
}

export async function send(port: number, raw: RawRequest): Promise<Answer> {
  const { status, body } = await sendWithHeaders(port, raw)
  return { status, body }
}

/** `send`, with the answer's headers. */
export function sendWithHeaders(
  port: number,
  raw: RawRequest,
): Promise<Answer & { headers: IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        method: raw.method ?? 'GET',
        path: raw.path,
        headers: raw.headers,
        agent: false,
      },
      (res) => {
        let text = ''
        res.on('data', (chunk: Buffer) => {
          text += chunk
        })
        res.on('end', () => {
          let body: Answer['body'] = {}
          try {
            body = JSON.parse(text)
          } catch {}
          resolve({ status: res.statusCode ?? 0, body, headers: res.headers })
        })
      },
    )
    req.on('error', reject)
    if (raw.chunks) for (const chunk of raw.chunks) req.write(chunk)
    req.end(raw.body)
  })
}

export interface RawSocket {
  socket: net.Socket
  /** The status line of the server's answer to the upgrade, e.g. `HTTP/1.1 101 Switching Protocols`. */
  status: string
  /** What came after the answer's head, and everything read later (while the socket reads). */
  received: Buffer[]
}

/** A WebSocket handshake by hand, so the test decides when (and whether) the socket reads. */
export async function openRaw(
  port: number,
  path: string,
  headers: Record<string, string>,
): Promise<RawSocket> {
  const socket = net.connect(port, '127.0.0.1')
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve)
    socket.once('error', reject)
  })
  const head = {
    host: `127.0.0.1:${port}`,
    upgrade: 'websocket',
    connection: 'Upgrade',
    'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==',
    'sec-websocket-version': '13',
    ...headers,
  }
  socket.write(
    `GET ${path} HTTP/1.1\r\n${Object.entries(head)
      .map(([name, value]) => `${name}: ${value}\r\n`)
      .join('')}\r\n`,
  )
  const received: Buffer[] = []
  let buffered = Buffer.alloc(0)
  const status = await new Promise<string>((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk])
      const end = buffered.indexOf('\r\n\r\n')
      if (end < 0) return
      socket.off('data', onData)
      received.push(buffered.subarray(end + 4))
      socket.on('data', (more: Buffer) => received.push(more))
      resolve(buffered.subarray(0, buffered.indexOf('\r\n')).toString())
    }
    socket.on('data', onData)
    socket.once('error', reject)
    socket.once('close', () => resolve(buffered.toString().split('\r\n')[0] ?? ''))
  })
  return { socket, status, received }
}

export interface Frame {
  opcode: number
  payload: Buffer
}

/** The server's frames (never masked) in what a raw socket received; a last partial frame is left out. */
export function frames(data: Buffer): Frame[] {
  const out: Frame[] = []
  let at = 0
  while (at + 2 <= data.length) {
    const opcode = data[at]! & 0x0f
    let length = data[at + 1]! & 0x7f
    let start = at + 2
    if (length === 126) {
      length = data.readUInt16BE(at + 2)
      start = at + 4
    } else if (length === 127) {
      length = Number(data.readBigUInt64BE(at + 2))
      start = at + 10
    }
    if (start + length > data.length) break
    out.push({ opcode, payload: data.subarray(start, start + length) })
    at = start + length
  }
  return out
}

/** Linux's view of a process's memory, in MB: resident now, and the most it has been. */
export async function memoryOf(pid: number): Promise<{ rss: number; peak: number }> {
  const { readFile } = await import('node:fs/promises')
  const status = await readFile(`/proc/${pid}/status`, 'utf8')
  const field = (name: string) => Number(new RegExp(`${name}:\\s+(\\d+) kB`).exec(status)?.[1]) / 1024
  return { rss: field('VmRSS'), peak: field('VmHWM') }
}
