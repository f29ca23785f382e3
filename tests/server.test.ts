import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { type CohortServer, type Refusal, startServer } from '@cohort/cli'
import {
  type CohortEvent,
  createRuntime,
  defineAgent,
  fileStore,
  type RunStore,
  scriptedModel,
} from '@cohort/core'
import { afterEach, beforeEach, describe, expect, test } from 'vitest'
import WebSocket from 'ws'
import { refusalLine } from '../packages/cli/src/serve-console.js'
import { approvalRuntime } from './fixtures/approval-scenario.js'
import { collect, repoRoot, spawnTs } from './support/processes.js'
import { frames, openRaw, send, sendWithHeaders } from './support/raw-http.js'
import { waitUntil } from './support/scripts.js'

let dir: string
let server: CohortServer | undefined
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'cohort-server-'))
})
afterEach(async () => {
  await server?.close()
  server = undefined
  token = null
  await rm(dir, { recursive: true, force: true })
})

/** The token of the server the test talks to: every request carries it. */
let token: string | null = null

async function api(method: string, url: string, body?: unknown, contentType = 'application/json') {
  const response = await fetch(url, {
    method,
    headers: {
      ...(token !== null && { authorization: `Bearer ${token}` }),
      ...(body !== undefined && { 'content-type': contentType }),
    },
    ...(body !== undefined && { body: typeof body === 'string' ? body : JSON.stringify(body) }),
  })
  return {
    status: response.status,
    body: (await response.json()) as Record<string, unknown> & { error?: string },
  }
}

function events(url: string): { received: { runId: string; event: CohortEvent }[]; socket: WebSocket } {
  const socket = new WebSocket(`${url.replace('http', 'ws')}api/events`, {
    headers: { authorization: `Bearer ${token}` },
  })
  const received: { runId: string; event: CohortEvent }[] = []
  socket.on('message', (data) => received.push(JSON.parse(String(data))))
  return { received, socket }
}

describe('cohort serve: HTTP API and event stream', () => {
  test('start, watch over the WebSocket, approve, resume an agent, read the tree and an agent', async () => {
    server = await startServer({ runtime: approvalRuntime(dir) })
    token = server.token
    const { received, socket } = events(server.url)
    await new Promise((resolve) => socket.once('open', resolve))

    const started = await api('POST', `${server.url}api/runs`, { task: 'ship it', runId: 'ship-1' })
    expect(started).toEqual({ status: 201, body: { runId: 'ship-1', status: 'running' } })

    await waitUntil(() => received.some((m) => m.event.type === 'agent.suspended'))
    const suspended = received.find((m) => m.event.type === 'agent.suspended')!.event as Extract<
      CohortEvent,
      { type: 'agent.suspended' }
    >
    expect(suspended.runId).toBe('ship-1')
    const callId = suspended.awaiting!.callId

    const approve = `${server.url}api/runs/ship-1/agents/${suspended.agentId}/approve`
    expect((await api('POST', approve, { callId: 'nope' })).body.error).toMatch(
      /agent operator of run ship-1 is not waiting for approval of call "nope"/,
    )
    expect(await api('POST', `${server.url}api/runs/ship-1/agents/ghost/approve`, { callId })).toEqual({
      status: 400,
      body: { error: 'run ship-1 has no agent "ghost"' },
    })
    // A long call or agent id is quoted by its start, not sent back whole.
    expect((await api('POST', approve, { callId: 'c'.repeat(900_000) })).body.error).toMatch(
      /^agent operator of run ship-1 is not waiting for approval of call "c{80}" \(/,
    )
    const longAgent = 'g'.repeat(5000)
    expect(await api('POST', `${server.url}api/runs/ship-1/agents/${longAgent}/approve`, { callId })).toEqual(
      { status: 400, body: { error: `run ship-1 has no agent "${'g'.repeat(80)}"` } },
    )
    expect(await api('GET', `${server.url}api/runs/ship-1/agents/${longAgent}`)).toEqual({
      status: 404,
      body: { error: `run ship-1 has no agent "${'g'.repeat(80)}"` },
    })
    expect(await api('POST', approve, { callId })).toEqual({
      status: 202,
      body: { runId: 'ship-1', agentId: 'operator', approved: callId },
    })
    await waitUntil(() => received.filter((m) => m.event.type === 'agent.suspended').length === 2)
    const answered = await api('POST', `${server.url}api/runs/ship-1/agents/operator/resume`, {
      payload: 'eu-west',
    })
    expect(answered.status).toBe(202)
    await waitUntil(() => received.some((m) => m.event.type === 'run.completed'))
    socket.close()

    const view = await api('GET', `${server.url}api/runs/ship-1`)
    expect(view.body.run).toMatchObject({ id: 'ship-1', status: 'completed' })
    expect(view.body.agents).toEqual([
      expect.objectContaining({ id: 'operator', parentId: null, status: 'completed', depth: 0 }),
    ])
    const agent = await api('GET', `${server.url}api/runs/ship-1/agents/operator`)
    const messages = agent.body.messages as { role: string; content: string }[]
    expect(messages.some((m) => m.role === 'user' && m.content.includes('eu-west'))).toBe(true)
    // An agent id is an id, not a path to another run's files.
    expect(await api('GET', `${server.url}api/runs/ship-1/agents/..%2F..%2Fother%2Fagents%2Flead`)).toEqual({
      status: 400,
      body: {
        error:
          'agentId: invalid agent id "../../other/agents/lead": expected ids of letters, digits, "_" or "-" joined by dots',
      },
    })
    const list = await api('GET', `${server.url}api/runs?status=completed`)
    expect((list.body.runs as { id: string }[]).map((r) => r.id)).toEqual(['ship-1'])
    expect((await api('POST', `${server.url}api/runs/ship-1/cancel`)).status).toBe(409)
  })

  test('a run the host app starts itself, on the runtime it serves, is streamed too', async () => {
    const runtime = approvalRuntime(dir)
    server = await startServer({ runtime })
    token = server.token
    const { received, socket } = events(server.url)
    await new Promise((resolve) => socket.once('open', resolve))
    runtime.start('operator', 'ship it', { runId: 'embedded' })
    await waitUntil(() => received.some((m) => m.event.type === 'agent.suspended'))
    expect(received[0]?.event).toMatchObject({ type: 'run.started', runId: 'embedded' })
    socket.close()
    // The program shuts its runtime down: a request meanwhile is told to go elsewhere.
    await runtime.shutdown()
    const refused = await api('POST', `${server.url}api/runs`, { task: 'one more' })
    expect(refused.status).toBe(503)
    expect(refused.body.error).toMatch(/this runtime was shut down/)
  })

  test('one run id asked for by many requests at once: one starts it, the others get 409, as one after another would', async () => {
    // A store that takes its time to answer, as a database over a network does.
    const files = fileStore(path.join(dir, 'slow'))
    const slow: RunStore = {
      ...files,
      loadRunRecord: async (runId) => {
        await new Promise((resolve) => setTimeout(resolve, 30))
        return files.loadRunRecord!(runId)
      },
      loadRun: async (runId) => {
        await new Promise((resolve) => setTimeout(resolve, 30))
        return files.loadRun(runId)
      },
    }
    const solo = defineAgent({ name: 'solo', instructions: 'Answer.' })
    const runtime = createRuntime({
      agents: [solo],
      model: scriptedModel({ solo: [{ action: 'finish', result: 1 }] }),
      store: slow,
    })
    server = await startServer({ runtime })
    token = server.token
    const together = await Promise.all(
      Array.from({ length: 10 }, () =>
        api('POST', `${server!.url}api/runs`, { task: 'race', runId: 'raced' }),
      ),
    )
    expect(together.map((answer) => answer.status).sort()).toEqual([201, ...Array(9).fill(409)])
    expect(together.find((answer) => answer.status === 409)?.body).toEqual({
      error: 'run raced already exists',
    })
  })

  test('bad requests get a clear 4xx and change nothing', async () => {
    server = await startServer({ runtime: approvalRuntime(dir) })
    token = server.token
    const runs = `${server.url}api/runs`
    const cases: [string, string, unknown, string | undefined, number, RegExp][] = [
      ['POST', runs, 'task=x', 'text/plain', 415, /expected a JSON body/],
      ['POST', runs, '{"task": ', undefined, 400, /body is not JSON/],
      ['POST', runs, { task: 5 }, undefined, 400, /invalid body: task: /],
      ['POST', runs, { task: 'x', colour: 'red' }, undefined, 400, /invalid body: .*colour/],
      [
        'POST',
        runs,
        { agent: 'nobody', task: 'x' },
        undefined,
        400,
        /unknown agent "nobody"; registered agents: operator/,
      ],
      ['POST', runs, { task: 'x', runId: '../etc' }, undefined, 400, /invalid run id "..\/etc"/],
      ['POST', runs, { task: 'x'.repeat(1_100_000) }, undefined, 413, /body larger than/],
      ['GET', `${runs}/..%2Fetc`, undefined, undefined, 400, /invalid run id/],
      // A long id is quoted by its start, not sent back whole.
      ['GET', `${runs}/${'a'.repeat(5000)}`, undefined, undefined, 400, /^runId: invalid run id "a{80}": /],
      ['GET', `${runs}/nosuch`, undefined, undefined, 404, /run nosuch is not in the store/],
      [
        'POST',
        runs,
        { agent: 'n'.repeat(900_000), task: 'x' },
        undefined,
        400,
        /^unknown agent "n{80}"; registered agents: operator$/,
      ],
      [
        'GET',
        `${runs}?status=${'z'.repeat(5000)}`,
        undefined,
        undefined,
        400,
        /^status "z{80}" is not one of/,
      ],
      [
        'GET',
        `${runs}?offset=${'x'.repeat(5000)}`,
        undefined,
        undefined,
        400,
        /^offset must be a non-negative integer, got "x{80}"$/,
      ],
      ['GET', `${runs}?status=done`, undefined, undefined, 400, /status "done" is not one of/],
      ['GET', `${runs}?limit=0`, undefined, undefined, 400, /limit must be between 1 and 1000/],
      [
        'GET',
        `${runs}?limit=1&limit=2`,
        undefined,
        undefined,
        400,
        /^limit: .*expected string, received array/,
      ],
      ['GET', `${runs}?offset=-1`, undefined, undefined, 400, /offset must be a non-negative integer/],
      // A misspelt filter would otherwise list every run.
      [
        'GET',
        `${runs}?stauts=failed`,
        undefined,
        undefined,
        400,
        /^unknown query parameter "stauts"; expected status, limit, offset, since, until$/,
      ],
      ['DELETE', runs, undefined, undefined, 405, /DELETE is not allowed on \/api\/runs; expected GET/],
      ['GET', `${server.url}api/nothing`, undefined, undefined, 404, /no such endpoint/],
      ['POST', `${runs}/nosuch/cancel`, undefined, undefined, 404, /not in the store/],
      [
        'POST',
        `${runs}/nosuch/agents/a/messages`,
        { text: '' },
        undefined,
        400,
        /text must be a non-empty string/,
      ],
    ]
    for (const [method, url, body, type, status, message] of cases) {
      const response = await api(method, url, body, type)
      expect(response.status, `${method} ${url}`).toBe(status)
      expect(response.body.error, `${method} ${url}`).toMatch(message)
    }
    // Media types RFC 9110 allows (a space before ";", an empty parameter) are JSON; bytes that
    // are not UTF-8 are refused, not read as U+FFFD.
    for (const [index, type] of [
      'application/json ; charset=utf-8',
      'application/json;',
      'application/json; charset=UTF-8;',
    ].entries()) {
      const spelled = await api('POST', runs, { task: 'spelled', runId: `t${index}` }, type)
      expect(spelled, type).toEqual({ status: 201, body: { runId: `t${index}`, status: 'running' } })
      await api('POST', `${runs}/t${index}/cancel`)
    }
    const notUtf8 = await fetch(runs, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json; charset=utf-8' },
      body: Buffer.concat([Buffer.from('{"task": "'), Buffer.from([0xff, 0xfe]), Buffer.from('"}')]),
    })
    expect(notUtf8.status).toBe(400)
    expect(await notUtf8.json()).toEqual({ error: 'body is not valid UTF-8; expected JSON in UTF-8' })
    expect((await api('POST', runs, { task: 'ship it', runId: 'once' })).status).toBe(201)
    expect(await api('POST', runs, { task: 'again', runId: 'once' })).toEqual({
      status: 409,
      body: { error: 'run once already exists' },
    })
    const list = await api('GET', runs)
    expect((list.body.runs as { id: string }[]).map((r) => r.id).sort()).toEqual(['once', 't0', 't1', 't2'])

    const port = Number(new URL(server.url).port)
    await expect(startServer({ runtime: approvalRuntime(dir), port })).rejects.toThrow(
      `cannot listen on 127.0.0.1:${port}: the port is already in use`,
    )

    const wrongSocket = new WebSocket(`${server.url.replace('http', 'ws')}api/elsewhere`, {
      headers: { authorization: `Bearer ${token}` },
    })
    const failure = await new Promise((resolve) => wrongSocket.once('error', resolve))
    expect(String(failure)).toMatch(/404/)
    // A misspelt `runId` would otherwise stream every run's events.
    const misspelt = new WebSocket(`${server.url.replace('http', 'ws')}api/events?runid=once`, {
      headers: { authorization: `Bearer ${token}` },
    })
    expect(String(await new Promise((resolve) => misspelt.once('error', resolve)))).toMatch(/400/)
  })

  test('the token: a browser signs in once from the link; options are checked before anything listens', async () => {
    server = await startServer({ runtime: approvalRuntime(dir) })
    expect(server.inspectorUrl).toBe(`${server.url}?token=${server.token}`)
    const page = await fetch(server.url)
    expect(page.status).toBe(200)
    expect(page.headers.get('content-security-policy')).toMatch(
      /default-src 'none'; script-src 'self' 'sha256-/,
    )
    expect(await page.text()).toMatch(/<script type="importmap">\{"imports":\{"preact":/)

    const signIn = await fetch(server.inspectorUrl, { redirect: 'manual' })
    expect(signIn.status).toBe(303)
    expect(signIn.headers.get('location')).toBe('./')
    const cookie = signIn.headers.get('set-cookie')!
    expect(cookie).toMatch(
      new RegExp(
        `^cohort_token_${new URL(server.url).port}=${server.token}; Path=/; HttpOnly; SameSite=Strict$`,
      ),
    )
    const withCookie = await fetch(`${server.url}api/runs`, { headers: { cookie: cookie.split(';')[0]! } })
    expect(withCookie.status).toBe(200)
    // A wrong token (an old link after a restart) signs nothing in: the page, without it in the
    // address, then asks to sign in, saying the link was stale (not that no token came).
    const wrongLink = await fetch(`${server.url}?token=${'z'.repeat(43)}`, { redirect: 'manual' })
    expect(wrongLink.status).toBe(303)
    expect(wrongLink.headers.get('location')).toBe('./')
    const stale = wrongLink.headers.get('set-cookie')!
    expect(stale).not.toMatch(/z{43}/)
    const asked = await fetch(`${server.url}api/runs`, { headers: { cookie: stale.split(';')[0]! } })
    expect(asked.status).toBe(401)
    expect(((await asked.json()) as { error: string }).error).toMatch(
      /^the link this browser opened holds another token than this server's .*: open the inspector URL/,
    )
    // Signed in with the right link since, it is in.
    const both = `${stale.split(';')[0]!}; ${cookie.split(';')[0]!}`
    expect((await fetch(`${server.url}api/runs`, { headers: { cookie: both } })).status).toBe(200)
    const plain = await fetch(`${server.url}api/events`, {
      headers: { authorization: `Bearer ${server.token}` },
    })
    expect(plain.status).toBe(426)

    await expect(startServer({ runtime: approvalRuntime(dir), token: 'short' })).rejects.toThrow(
      /the token must be 16 to 512 characters/,
    )
    await expect(startServer({ runtime: approvalRuntime(dir), allowOrigins: ['*'] })).rejects.toThrow(
      /"\*" is not an origin/,
    )
    const chosen = 'a-token-of-my-own-choosing'
    const mine = await startServer({ runtime: approvalRuntime(dir), token: chosen })
    try {
      expect(mine.token).toBe(chosen)
      const ok = await fetch(`${mine.url}api/runs`, { headers: { authorization: `Bearer ${chosen}` } })
      expect(ok.status).toBe(200)
    } finally {
      await mine.close()
    }
    // On every interface, the link it prints is one it answers: the wildcard is no Host it takes.
    const everywhere = await startServer({ runtime: approvalRuntime(dir), host: '0.0.0.0' })
    try {
      expect(everywhere.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/)
      const signed = await fetch(everywhere.inspectorUrl, { redirect: 'manual' })
      expect(signed.status).toBe(303)
      const listed = await fetch(`${everywhere.url}api/runs`, {
        headers: { authorization: `Bearer ${everywhere.token}` },
      })
      expect(listed.status).toBe(200)
    } finally {
      await everywhere.close()
    }
    const open = await startServer({ runtime: approvalRuntime(dir), token: false })
    try {
      expect(open.token).toBeNull()
      expect(open.inspectorUrl).toBe(open.url)
      expect((await fetch(`${open.url}api/runs`)).status).toBe(200)
      // No token asked for, but still only its own pages and names.
      const foreign = await fetch(`${open.url}api/runs`, { headers: { origin: 'http://127.0.0.1:8999' } })
      expect(foreign.status).toBe(403)
    } finally {
      await open.close()
    }
  })

  test('a refused request is reported with its path as sent: an encoded newline or escape forges no console line', async () => {
    const refusals: Refusal[] = []
    server = await startServer({
      runtime: approvalRuntime(dir),
      onRefused: (refusal) => refusals.push(refusal),
    })
    const port = Number(new URL(server.url).port)
    // Any web page can send this (no token, no Origin needed to be refused and reported).
    const forged = '/api/x%0A2026-12-06T09:00:00.000Z%20run%20ship-1%20completed:%20ok%1B[2J'
    expect((await send(port, { path: forged })).status).toBe(401)
    expect(refusals.map((refusal) => refusal.path)).toEqual([forged])
    const line = refusalLine(refusals[0]!)
    expect(line.split('\n')).toEqual([
      expect.stringMatching(/^\S+Z refused GET \/api\/x%0A.* \(401\): missing token/),
      '',
    ])
    // biome-ignore lint/suspicious/noControlCharactersInRegex: what must not be printed
    expect(line).not.toMatch(/\x1b/)
  })

  test('allowed origins get CORS answers and allowed hosts are answered; others are not', async () => {
    server = await startServer({
      runtime: approvalRuntime(dir),
      allowOrigins: ['https://ops.example.com'],
      allowHosts: ['cohort.example.com'],
    })
    token = server.token
    const port = Number(new URL(server.url).port)
    const preflight = await send(port, {
      method: 'OPTIONS',
      path: '/api/runs',
      headers: {
        origin: 'https://ops.example.com',
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'authorization, content-type',
      },
    })
    expect(preflight.status).toBe(204)
    const allowed = await sendWithHeaders(port, {
      path: '/api/runs',
      headers: {
        origin: 'https://ops.example.com',
        host: 'cohort.example.com',
        authorization: `Bearer ${token}`,
      },
    })
    expect(allowed.status).toBe(200)
    expect(allowed.headers['access-control-allow-origin']).toBe('https://ops.example.com')
    for (const host of [`localhost:${port}`, `[::1]:${port}`, 'COHORT.example.com']) {
      const named = await send(port, {
        path: '/api/runs',
        headers: { host, authorization: `Bearer ${token}` },
      })
      expect(named.status, host).toBe(200)
    }
    const other = await send(port, {
      path: '/api/runs',
      headers: { origin: 'https://ops.example.org', authorization: `Bearer ${token}` },
    })
    expect(other.status).toBe(403)
    expect(other.body.error).toMatch(/expected no Origin or one of .*https:\/\/ops\.example\.com/)
  })

  test('a socket that stops answering pings is dropped; one that answers stays', async () => {
    server = await startServer({ runtime: approvalRuntime(dir), heartbeatMs: 100 })
    token = server.token
    const port = Number(new URL(server.url).port)
    // A raw socket reads everything but never answers a ping, as a peer that vanished.
    const dead = await openRaw(port, '/api/events', { authorization: `Bearer ${token}` })
    expect(dead.status).toBe('HTTP/1.1 101 Switching Protocols')
    const alive = events(server.url)
    await new Promise((resolve) => alive.socket.once('open', resolve))
    const dropped = Date.now()
    await new Promise((resolve) => dead.socket.once('close', resolve))
    expect(Date.now() - dropped).toBeLessThan(3_000)
    expect(frames(Buffer.concat(dead.received)).map((frame) => frame.opcode)).toContain(9)
    await new Promise((resolve) => setTimeout(resolve, 300))
    expect(alive.socket.readyState).toBe(WebSocket.OPEN)
    alive.socket.close()
  })

  test('GET /api/openapi.json describes every endpoint of docs/server.md from the schemas that check them', async () => {
    server = await startServer({ runtime: approvalRuntime(dir) })
    token = server.token
    const doc = (await api('GET', `${server.url}api/openapi.json`)).body as {
      paths: Record<
        string,
        Record<
          string,
          {
            requestBody?: { content: Record<string, { schema: unknown }> }
            responses: Record<string, unknown>
          }
        >
      >
      components: { schemas: Record<string, { required?: string[]; properties?: Record<string, unknown> }> }
    }
    const guide = await readFile(path.join(repoRoot, 'docs/server.md'), 'utf8')
    const documented = [...guide.matchAll(/^\| `(GET|POST) (\/api\/[^ `?]+)/gm)].map(
      ([, method, route]) => `${method!.toLowerCase()} ${route!.replace(/:(\w+)/g, '{$1}')}`,
    )
    expect(documented.length).toBeGreaterThanOrEqual(10)
    const described = Object.entries(doc.paths).flatMap(([route, methods]) =>
      Object.keys(methods).map((method) => `${method} ${route}`),
    )
    // The description does not list itself; the event socket is in the guide's own section.
    const endpoints = documented.filter((route) => route !== 'get /api/openapi.json')
    expect(described.sort()).toEqual([...endpoints, 'get /api/events'].sort())
    expect(doc.components.schemas.StartRun?.required).toEqual(['task'])
    expect(Object.keys(doc.components.schemas.StartRun?.properties ?? {})).toEqual(['agent', 'task', 'runId'])
    expect(doc.paths['/api/runs']?.post?.requestBody?.content['application/json']).toBeDefined()
    // Each endpoint that reads a stored run may find its record unreadable (422); the list skips such runs.
    const reading = described.filter((route) => route.includes('/api/runs') && route !== 'get /api/runs')
    for (const route of reading) {
      const [method, at] = route.split(' ') as [string, string]
      expect(Object.keys(doc.paths[at]![method]!.responses), route).toContain('422')
    }
  })

  test('SIGTERM stores every run and exits; the next `cohort serve` resumes the runs in flight', async () => {
    const config = path.join(repoRoot, 'tests/fixtures/cli-config.ts')
    const env = { CLI_SLEEP: '1.5', NO_COLOR: '1' }
    const serve = () => {
      const child = spawnTs('packages/cli/src/bin.ts', ['serve', config, '--port', '0'], env, dir)
      let url = ''
      const done = collect(child, (line) => {
        const printed = /cohort serve: (\S+) /.exec(line)?.[1]
        if (!printed) return
        // The inspector's link carries the token; the API takes it as a header.
        const link = new URL(printed)
        token = link.searchParams.get('token')
        url = `${link.origin}/`
      })
      return { child, done, url: () => url }
    }

    const first = serve()
    await waitUntil(() => first.url() !== '', 20_000)
    await api('POST', `${first.url()}api/runs`, { task: 'two naps', runId: 'inflight' })
    await waitUntil(async () => {
      const view = await api('GET', `${first.url()}api/runs/inflight`)
      return (view.body.agents as { status: string }[] | undefined)?.[0]?.status === 'suspended'
    }, 20_000)
    first.child.kill('SIGTERM')
    const stopped = await first.done
    expect(stopped.code, stopped.stderr).toBe(0)
    expect(stopped.stdout).toMatch(/SIGTERM: storing every run and stopping/)

    const second = serve()
    await waitUntil(() => second.url() !== '', 20_000)
    await waitUntil(async () => {
      const view = await api('GET', `${second.url()}api/runs/inflight`)
      return (view.body.run as { status: string }).status === 'completed'
    }, 20_000)
    const view = await api('GET', `${second.url()}api/runs/inflight`)
    expect((view.body.run as { result: unknown }).result).toEqual(['a:nap done', 'b:nap done'])
    second.child.kill('SIGTERM')
    const secondOut = await second.done
    expect(secondOut.stdout).toMatch(/Resumed 1 run\(s\) that were in flight: inflight/)
  }, 60_000)
})
