// A real `cohort serve` process, attacked the ways a web page, a DNS rebinding or a greedy client
// would: each attempt is refused with its status, and nothing is started, stored or sent.
import type { ChildProcess } from 'node:child_process'
import { mkdtemp, readdir, rm } from 'node:fs/promises'
import http from 'node:http'
import { tmpdir } from 'node:os'
import path from 'node:path'
import type { CohortEvent } from '@cohort/core'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import WebSocket from 'ws'
import { collect, type Finished, repoRoot, spawnTs } from './support/processes.js'
import { frames, memoryOf, openRaw, type RawRequest, send } from './support/raw-http.js'
import { waitUntil } from './support/scripts.js'

const config = path.join(repoRoot, 'tests/fixtures/serve-security-config.ts')
/** The page of the report: another origin on the same machine. */
const foreign = 'http://127.0.0.1:8999'

let dir: string
let child: ChildProcess
let finished: Promise<Finished>
let port: number
let token: string
let callId: string
/** A client of the server's own user: it sees every event the server sends. */
let witness: WebSocket
const witnessed: CohortEvent[] = []

const bearer = () => ({ authorization: `Bearer ${token}` })
const api = (raw: RawRequest) => send(port, { ...raw, headers: { ...bearer(), ...raw.headers } })

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'cohort-security-'))
  child = spawnTs(
    'packages/cli/src/bin.ts',
    ['serve', config, '--port', '0', '--dir', dir],
    { NO_COLOR: '1' },
    dir,
  )
  let link = ''
  finished = collect(child, (line) => {
    link ||= /cohort serve: (\S+) /.exec(line)?.[1] ?? ''
  })
  await waitUntil(() => link !== '', 20_000)
  const url = new URL(link)
  port = Number(url.port)
  token = url.searchParams.get('token')!
  expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/)

  // The user's own run, waiting for their approval of a tool call: what an attacker would approve.
  const started = await api({
    method: 'POST',
    path: '/api/runs',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ task: 'ship it', runId: 'waiting' }),
  })
  expect(started.status).toBe(201)
  await waitUntil(async () => {
    const view = await api({ path: '/api/runs/waiting' })
    const agents = view.body.agents as { awaiting?: { callId: string } }[]
    callId = agents[0]?.awaiting?.callId ?? ''
    return callId !== ''
  })
  witness = new WebSocket(`ws://127.0.0.1:${port}/api/events`, { headers: bearer() })
  // The streamed tokens of the flood below are big and many: the witness keeps only the other events.
  witness.on('message', (data: Buffer) => {
    if (data.length < 10_000) witnessed.push(JSON.parse(String(data)).event)
  })
  await new Promise((resolve) => witness.once('open', resolve))
}, 30_000)

afterAll(async () => {
  witness?.close()
  child?.kill('SIGTERM')
  const out = await finished
  // On stderr only the refusals of the attacks below, one line each (no crash, no warning), never the token.
  const others = out.stderr
    .split('\n')
    .filter((line) => line !== '' && !/^\S+Z refused \S+ \S+ \(40[13]\): /.test(line))
  expect(others).toEqual([])
  expect(out.stderr).toMatch(/refused \S+ \/api\/\S+ \(401\): /)
  expect(out.stderr).toMatch(/refused \S+ \S+ \(403\): /)
  expect(out.stderr).not.toContain(token)
  await rm(dir, { recursive: true, force: true })
})

describe('cohort serve answers only its user', () => {
  test('each attack is refused with its status, and nothing is started, stored or sent', async () => {
    const cookie = `cohort_token_${port}=${token}`
    const task = JSON.stringify({ task: 'started by another website' })
    const approval = JSON.stringify({ callId })
    const fromElsewhere = /requests from pages at http:\/\/127\.0\.0\.1:8999 are refused/
    // What a page of any site may send without asking (CORS-safelisted), with and without a JSON-looking parameter.
    const safelisted = [
      'text/plain',
      'text/plain; application/json',
      'text/plain; charset=utf-8; x=application/json',
      'application/x-www-form-urlencoded',
      'application/x-www-form-urlencoded; application/json',
      'multipart/form-data; boundary=b',
      'multipart/form-data; boundary=b; application/json',
    ]
    const attacks: [string, RawRequest, number, RegExp][] = [
      // A page of another origin, in a browser that holds the inspector's cookie (same site: it is sent).
      ...safelisted.map((type): [string, RawRequest, number, RegExp] => [
        `cross-origin POST as ${type}`,
        {
          method: 'POST',
          path: '/api/runs',
          headers: { origin: foreign, cookie, 'content-type': type },
          body: task,
        },
        403,
        fromElsewhere,
      ]),
      [
        'cross-origin approve as text/plain',
        {
          method: 'POST',
          path: '/api/runs/waiting/agents/operator/approve',
          headers: { origin: foreign, cookie, 'content-type': 'text/plain; application/json' },
          body: approval,
        },
        403,
        fromElsewhere,
      ],
      [
        'cross-origin approve even with the token',
        {
          method: 'POST',
          path: '/api/runs/waiting/agents/operator/approve',
          headers: { origin: foreign, ...bearer(), 'content-type': 'application/json' },
          body: approval,
        },
        403,
        fromElsewhere,
      ],
      ['cross-origin read', { path: '/api/runs', headers: { origin: foreign, cookie } }, 403, fromElsewhere],
      [
        'a sandboxed page (Origin: null)',
        {
          method: 'POST',
          path: '/api/runs',
          headers: { origin: 'null', cookie, 'content-type': 'application/json' },
          body: task,
        },
        403,
        /requests from pages at null are refused/,
      ],
      // No token, or not this server's.
      [
        'POST without a token',
        { method: 'POST', path: '/api/runs', headers: { 'content-type': 'application/json' }, body: task },
        401,
        /missing token/,
      ],
      [
        'POST with a wrong token',
        {
          method: 'POST',
          path: '/api/runs',
          headers: { authorization: `Bearer ${'x'.repeat(43)}`, 'content-type': 'application/json' },
          body: task,
        },
        401,
        /wrong token/,
      ],
      [
        'approve with the cookie of an earlier start',
        {
          method: 'POST',
          path: '/api/runs/waiting/agents/operator/approve',
          headers: { cookie: `cohort_token_${port}=${'y'.repeat(43)}`, 'content-type': 'application/json' },
          body: approval,
        },
        401,
        /signed in to an earlier start/,
      ],
      ['read without a token', { path: '/api/runs/waiting' }, 401, /missing token/],
      // DNS rebinding: the page's own name, now pointing at 127.0.0.1.
      [
        'Host: evil.example',
        { path: '/api/runs', headers: { host: 'evil.example', ...bearer() } },
        403,
        /Host "evil.example"/,
      ],
      [
        'a request in absolute form naming evil.example, its Host ours',
        { path: 'http://evil.example/api/runs', headers: bearer() },
        403,
        /Host "evil.example" is not a name this server answers as/,
      ],
      [
        'Host: evil.example, POST',
        {
          method: 'POST',
          path: '/api/runs',
          headers: { host: `evil.example:${port}`, cookie, 'content-type': 'application/json' },
          body: task,
        },
        403,
        /Host "evil.example:\d+" is not a name this server answers as/,
      ],
      // The token holder's own bodies, of a type that is not JSON, or too big.
      ...['text/plain; application/json', 'application/json-seq', 'application/json; charset=utf-16'].map(
        (type): [string, RawRequest, number, RegExp] => [
          `POST with the token as ${type}`,
          { method: 'POST', path: '/api/runs', headers: { ...bearer(), 'content-type': type }, body: task },
          415,
          /expected a JSON body \(content-type: application\/json\)/,
        ],
      ),
      [
        'an oversized body',
        {
          method: 'POST',
          path: '/api/runs',
          headers: { ...bearer(), 'content-type': 'application/json' },
          body: JSON.stringify({ task: 'x'.repeat(5_000_000) }),
        },
        413,
        /body larger than 1000000 bytes/,
      ],
      [
        'an oversized body, streamed',
        {
          method: 'POST',
          path: '/api/runs',
          headers: { ...bearer(), 'content-type': 'application/json' },
          chunks: Array.from({ length: 30 }, () => Buffer.alloc(100_000, 'x')),
        },
        413,
        /body larger than 1000000 bytes/,
      ],
    ]
    for (const [name, attack, status, message] of attacks) {
      const answer = await send(port, attack)
      expect(answer.status, name).toBe(status)
      expect(answer.body.error, name).toMatch(message)
    }

    const upgrades: [string, Record<string, string>, number][] = [
      ['upgrade from another origin, with the cookie', { origin: foreign, cookie }, 403],
      ['upgrade from another origin, with the token', { origin: foreign, ...bearer() }, 403],
      ['upgrade without a token', {}, 401],
      ['upgrade with a wrong token', { authorization: `Bearer ${'x'.repeat(43)}` }, 401],
      ['upgrade as evil.example', { host: 'evil.example', ...bearer() }, 403],
    ]
    for (const [name, headers, status] of upgrades) {
      const raw = await openRaw(port, '/api/events', headers)
      expect(raw.status, name).toMatch(new RegExp(`^HTTP/1.1 ${status} `))
      await new Promise((resolve) => raw.socket.once('close', resolve))
      expect(frames(Buffer.concat(raw.received)), name).toEqual([])
    }

    // Nothing started or stored: the user's run is the only one, still waiting on the same call.
    const list = await api({ path: '/api/runs' })
    expect((list.body.runs as { id: string }[]).map((run) => run.id)).toEqual(['waiting'])
    expect(await readdir(path.join(dir, 'runs'))).toEqual(['waiting'])
    const view = await api({ path: '/api/runs/waiting' })
    expect(view.body.agents).toEqual([
      expect.objectContaining({
        status: 'suspended',
        awaiting: expect.objectContaining({ kind: 'approval', callId }),
      }),
    ])
    const detail = await api({ path: '/api/runs/waiting/agents/operator' })
    expect((detail.body.messages as { role: string }[]).some((message) => message.role === 'tool')).toBe(
      false,
    )
    // Nothing sent: had any attempt moved a run, its events would have reached the user's socket.
    await new Promise((resolve) => setTimeout(resolve, 300))
    expect(witnessed).toEqual([])
  }, 60_000)

  test('500 clients connecting at once: 100 sockets at most, the rest refused, and the server answers on', async () => {
    const connect = (headers: Record<string, string>) =>
      new Promise<{ socket: WebSocket; status: number }>((resolve) => {
        const socket = new WebSocket(`ws://127.0.0.1:${port}/api/events`, { headers })
        socket.once('open', () => resolve({ socket, status: 101 }))
        socket.once('unexpected-response', (_, response) => {
          resolve({ socket, status: response.statusCode ?? 0 })
          response.resume()
          socket.terminate()
        })
        socket.once('error', () => resolve({ socket, status: 0 }))
      })
    const statuses = (list: { status: number }[]) => {
      const counts: Record<number, number> = {}
      for (const { status } of list) counts[status] = (counts[status] ?? 0) + 1
      return counts
    }

    const strangers = await Promise.all(Array.from({ length: 500 }, () => connect({})))
    expect(statuses(strangers)).toEqual({ 401: 500 })

    const before = await memoryOf(child.pid!)
    const crowd = await Promise.all(Array.from({ length: 500 }, () => connect(bearer())))
    // The witness holds one of the 100 places.
    expect(statuses(crowd)).toEqual({ 101: 99, 503: 401 })
    const answer = await api({ path: '/api/runs' })
    expect(answer.status).toBe(200)
    expect((await memoryOf(child.pid!)).rss - before.rss).toBeLessThan(100)
    for (const { socket } of crowd) socket.close()

    // The places are given back as the sockets close.
    await waitUntil(async () => {
      const again = await connect(bearer())
      again.socket.close()
      return again.status === 101
    })
    expect((await api({ path: '/api/runs' })).body.runs).toHaveLength(1)
  }, 60_000)

  test('upgrade requests one after another on one kept-alive connection hold one place at most, each a clear 426', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
    const answers: { status: number; body: string }[] = []
    try {
      for (let i = 0; i < 120; i++) {
        answers.push(
          await new Promise((resolve, reject) => {
            const headers = { ...bearer(), upgrade: 'websocket', connection: 'keep-alive' }
            http
              .get({ host: '127.0.0.1', port, path: '/api/events', agent, headers }, (response) => {
                let body = ''
                response.on('data', (chunk) => {
                  body += chunk
                })
                response.on('end', () => resolve({ status: response.statusCode ?? 0, body }))
              })
              .on('error', reject)
          }),
        )
      }
      expect(new Set(answers.map((answer) => answer.status))).toEqual(new Set([426]))
      expect(JSON.parse(answers[0]!.body).error).toMatch(/this endpoint is a WebSocket/)
      // With that connection still open, a real client gets its socket.
      const socket = new WebSocket(`ws://127.0.0.1:${port}/api/events`, { headers: bearer() })
      expect(
        await new Promise((resolve) => {
          socket.once('open', () => resolve(101))
          socket.once('unexpected-response', (_, response) => resolve(response.statusCode))
        }),
      ).toBe(101)
      socket.close()
    } finally {
      agent.destroy()
    }
  })

  test('a client that reads too slowly is closed (1008) and server memory stays bounded while 2,000 events go out', async () => {
    const tokens = 2_000
    const tokenBytes = 128 * 1024
    const slow = await Promise.all(Array.from({ length: 4 }, () => openRaw(port, '/api/events', bearer())))
    for (const raw of slow) {
      expect(raw.status).toBe('HTTP/1.1 101 Switching Protocols')
      raw.socket.pause()
    }
    let bytes = 0
    let readerSawEnd = false
    const reader = new WebSocket(`ws://127.0.0.1:${port}/api/events`, { headers: bearer() })
    reader.on('message', (data: Buffer) => {
      bytes += data.length
      // Events arrive in order: the run's end comes after every token. Small, unlike a token event.
      const text = data.length < 4096 ? data.toString() : ''
      if (text.includes('"run.completed"') && text.includes('"chatty"')) readerSawEnd = true
    })
    const readerClosed = new Promise((resolve) => reader.once('close', resolve))
    await new Promise((resolve) => reader.once('open', resolve))
    const before = await memoryOf(child.pid!)

    const started = await api({
      method: 'POST',
      path: '/api/runs',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ agent: 'chatty', task: `${tokens}x${tokenBytes}`, runId: 'chatty' }),
    })
    expect(started.status).toBe(201)
    await waitUntil(
      () => witnessed.some((event) => event.type === 'run.completed' && event.runId === 'chatty'),
      30_000,
    )
    await waitUntil(() => readerSawEnd)
    const sent = bytes / 1024 / 1024
    expect(sent).toBeGreaterThan((tokens * tokenBytes) / 1024 / 1024)
    const after = await memoryOf(child.pid!)

    // Unbounded, the server would hold every unsent event for them (about `sent`); bounded, it grows
    // by what running the run takes (about 40 MB on a small VM), whatever the readers do.
    expect(after.peak - before.rss).toBeLessThan(sent / 2)

    // A reader that keeps up gets every event; the slow ones were cut off near the bound (4 MiB, plus
    // what the kernel holds), each told why, instead of being sent, and the server holding, all of it.
    for (const raw of slow) {
      raw.socket.resume()
      await waitUntil(() => frames(Buffer.concat(raw.received)).some((frame) => frame.opcode === 8))
      raw.socket.destroy()
      const received = Buffer.concat(raw.received)
      expect(received.length / 1024 / 1024).toBeLessThan(sent / 4)
      const last = frames(received).at(-1)
      expect(last?.opcode).toBe(8)
      expect(last?.payload.readUInt16BE(0)).toBe(1008)
      expect(last?.payload.subarray(2).toString()).toMatch(/^too slow: over 4194304 bytes of events unread$/)
    }
    expect(reader.readyState).toBe(WebSocket.OPEN)
    reader.close()
    await readerClosed
  }, 60_000)
})
