import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { createServer } from 'node:http'
import { createRequire } from 'node:module'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createRuntime, defineAgent, fileStore, type ModelRequest, scriptedModel, sleep } from '@cohort/core'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import WebSocket from 'ws'
// playwright-core is a devDependency of @cohort/cli, so it resolves from there, not from the repository root.
import type { Browser, Page } from '../packages/cli/node_modules/playwright-core/index.js'
import { type CohortServer, startServer } from '../packages/cli/src/server/server.js'
import { approvalModel, operator } from './fixtures/approval-scenario.js'
import { twoAgentsOnCall0 } from './fixtures/call-0-approvals.js'
import { heldDependent } from './fixtures/held-dependent.js'
import { settledResults } from './support/scripts.js'

const { chromium } = createRequire(new URL('../packages/cli/package.json', import.meta.url))(
  'playwright-core',
) as typeof import('../packages/cli/node_modules/playwright-core/index.js')

const chromiumPath = '/usr/bin/chromium'
const hasChromium = existsSync(chromiumPath)
const artifacts = fileURLToPath(new URL('../test-artifacts/', import.meta.url))

if (!hasChromium) {
  console.warn(
    `\n!!!!!!!!!!\n!! inspector.test.ts: ${chromiumPath} is missing, so the web inspector is NOT tested.\n` +
      '!! Install it (apt-get install chromium); under CI=true this is a failure.\n!!!!!!!!!!\n',
  )
}

// Defined only when it fails, so a machine with Chromium reports no skipped test.
if (!hasChromium && process.env.CI === 'true') {
  test('Chromium is installed (required under CI)', () => {
    expect(existsSync(chromiumPath), `${chromiumPath} is required to test the web inspector`).toBe(true)
  })
}

const worker = defineAgent({ name: 'worker', instructions: 'Sleep as told, then report.', tools: [sleep] })
const lead = defineAgent({ name: 'lead', instructions: 'Fan out, wait, report.', subagents: [worker] })

/** Model latency per call: workers take 300-800 ms a turn, so the tree fills in over a couple of seconds. */
const latencyMs = (request: ModelRequest) =>
  request.agent.name === 'lead' ? 300 : 300 + (Number(request.agent.task) || 0) * 1000

/** The lead launches three workers; each calls `sleep` through a native tool call, then finishes. */
const model = scriptedModel(
  {
    lead: [
      {
        action: 'launch_subagents',
        agents: [
          { agent: 'worker', task: '0.1', id: 'alpha' },
          { agent: 'worker', task: '0.3', id: 'beta' },
          { agent: 'worker', task: '0.5', id: 'gamma' },
        ],
      },
      { action: 'wait_for_subagents' },
      (request) => ({ action: 'finish', result: { reports: settledResults(request).map((r) => r.result) } }),
    ],
    worker: [
      (request) => ({
        toolCalls: [
          {
            id: 'call_sleep',
            name: 'sleep',
            arguments: JSON.stringify({ seconds: Number(request.agent.task) }),
          },
        ],
      }),
      (request) => ({
        toolCalls: [
          {
            id: 'call_finish',
            name: 'finish',
            arguments: JSON.stringify({
              result: { slept: Number(request.agent.task), note: '<b>not bold</b>' },
            }),
          },
        ],
      }),
    ],
  },
  { latencyMs },
)

/** A request of the test itself: it carries the server's token, as any client of the API must. */
function withToken(server: CohortServer, init: RequestInit = {}): RequestInit {
  return {
    ...init,
    headers: { ...(init.headers as Record<string, string>), authorization: `Bearer ${server.token}` },
  }
}

/** The server's API as a signed-in client calls it: a GET, or a POST of `body` as JSON. */
function callApi(server: CohortServer, path: string, body?: unknown): Promise<Response> {
  const init: RequestInit =
    body === undefined
      ? {}
      : { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }
  return fetch(new URL(path, server.url), withToken(server, init))
}

interface AgentSummary {
  id: string
  name: string
  status: string
  awaiting?: { kind: 'approval' | 'input'; callId: string; tool: string; prompt: string }
}

interface RunView {
  run: { status: string; result?: unknown }
  agents: AgentSummary[]
}

describe.runIf(hasChromium)('web inspector', () => {
  let server: CohortServer
  let browser: Browser
  let page: Page
  const pageErrors: string[] = []

  beforeAll(async () => {
    server = await startServer({ runtime: createRuntime({ agents: [lead, worker], model }), port: 0 })
    browser = await chromium.launch({
      executablePath: chromiumPath,
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    })
    page = await browser.newPage({ viewport: { width: 1440, height: 900 } })
    page.on('pageerror', (error) => pageErrors.push(error.message))
    page.on('console', (message) => {
      if (message.type() === 'error') pageErrors.push(message.text())
    })
  })

  afterAll(async () => {
    await browser?.close()
    await server?.close()
  })

  const api = async <T>(path: string, init?: RequestInit): Promise<T> => {
    const response = await fetch(new URL(path, server.url), withToken(server, init))
    expect(response.ok, `${init?.method ?? 'GET'} ${path}: ${response.status}`).toBe(true)
    return (await response.json()) as T
  }

  test('shows a run live: the tree fills in, bars overlap, and an agent shows its messages and result', async () => {
    await page.goto(server.inspectorUrl)
    await page.locator('#connection[data-state="open"]').waitFor({ timeout: 10_000 })

    const { runId } = await api<{ runId: string }>('/api/runs', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ task: 'Fan out to three workers' }),
    })

    // The new run appears in the list through the event socket; select it.
    const runItem = page.locator(`#runs [data-run-id="${runId}"]`)
    await runItem.waitFor({ timeout: 10_000 })
    await runItem.click()
    await expect.poll(() => page.evaluate('location.hash')).toBe(`#run=${runId}`)

    // A worker shows up in the tree while the run is still running: live, not after the fact.
    const nodes = page.locator('#tree [data-agent-id]')
    await nodes.nth(1).waitFor({ timeout: 10_000 })
    const midway = await api<{ run: { status: string }; agents: AgentSummary[] }>(`/api/runs/${runId}`)
    expect(midway.run.status).toBe('running')
    // The slowest worker (2 s of work): the fastest may already be done on a loaded machine.
    const slowWorker = await page.locator('#tree [data-agent-id="lead.gamma"]').getAttribute('data-state')
    expect(['idle', 'running', 'suspended']).toContain(slowWorker)
    await expect
      .poll(() => page.locator(`#runs [data-run-id="${runId}"]`).getAttribute('data-state'))
      .toBe('running')
    mkdirSync(artifacts, { recursive: true })
    await page.screenshot({ path: `${artifacts}inspector-live.png` })

    // Every agent completes; tree nodes and timeline bars say so.
    await expect
      .poll(() => page.locator('#tree [data-state="completed"]').count(), { timeout: 15_000 })
      .toBe(4)
    await expect.poll(() => page.locator('#timeline [data-state="completed"]').count()).toBe(4)
    await expect
      .poll(() => page.locator(`#runs [data-run-id="${runId}"]`).getAttribute('data-state'))
      .toBe('completed')

    const { agents } = await api<{ agents: AgentSummary[] }>(`/api/runs/${runId}`)
    expect(agents).toHaveLength(4)
    const workers = agents.filter((agent) => agent.name === 'worker')
    expect(workers).toHaveLength(3)
    const [alpha, , gamma] = workers as [AgentSummary, AgentSummary, AgentSummary]
    expect(await nodes.count()).toBe(4)

    // A row is labelled with the agent's own id (its indentation shows its parents), the full id in its title.
    const alphaLabel = page.locator(`#timeline [data-row-agent="${alpha.id}"] .tl-label`)
    expect((await alphaLabel.textContent())?.trim()).toBe(alpha.id.slice(alpha.id.lastIndexOf('.') + 1))
    expect(await alphaLabel.getAttribute('title')).toBe(`worker (${alpha.id})`)

    // The workers ran in parallel: their bars overlap on the timeline.
    const boxA = await page.locator(`#timeline [data-agent-id="${alpha.id}"]`).boundingBox()
    const boxG = await page.locator(`#timeline [data-agent-id="${gamma.id}"]`).boundingBox()
    expect(boxA && boxG).toBeTruthy()
    expect(Math.max(boxA!.x, boxG!.x)).toBeLessThan(Math.min(boxA!.x + boxA!.width, boxG!.x + boxG!.width))

    // Clicking a worker shows its messages, its tool calls and its result.
    await page.locator(`#tree [data-agent-id="${gamma.id}"]`).click()
    const detail = page.locator('#detail')
    await detail.locator(`[data-agent-id="${gamma.id}"]`).waitFor()
    await expect.poll(() => detail.locator('#agent-result').textContent()).toContain('"slept": 0.5')
    expect(await detail.locator('#agent-result').textContent()).toContain('<b>not bold</b>')
    expect(await detail.locator('b').count()).toBe(0)
    const roles = await detail
      .locator('.message')
      .evaluateAll((els) => els.map((el) => el.getAttribute('data-role')))
    expect(roles).toEqual(expect.arrayContaining(['system', 'user', 'assistant', 'tool']))
    expect(await detail.locator('.tool-call[data-tool="sleep"]').textContent()).toContain('"seconds": 0.5')
    expect(await detail.locator('.message[data-role="user"]').first().textContent()).toContain('0.5')
    expect(await page.locator(`#tree [data-agent-id="${gamma.id}"]`).getAttribute('aria-selected')).toBe(
      'true',
    )

    await page.screenshot({ path: `${artifacts}inspector.png` })

    // On a laptop's width the timeline stays in its column, left of the agent's panel.
    await page.setViewportSize({ width: 1024, height: 768 })
    // The timeline's pane (it scrolls what does not fit), and the page, which must not.
    const timelineBox = await page.locator('#timeline').locator('..').boundingBox()
    const detailBox = await detail.boundingBox()
    expect(timelineBox!.x + timelineBox!.width).toBeLessThanOrEqual(detailBox!.x + 1)
    expect(await page.evaluate('document.documentElement.scrollWidth')).toBeLessThanOrEqual(1024)
    await page.setViewportSize({ width: 1440, height: 900 })

    // A deep link selects the run and the agent.
    const other = await browser.newPage()
    await other.goto(`${server.inspectorUrl}#run=${runId}&agent=${encodeURIComponent(alpha.id)}`)
    await other.locator(`#detail [data-agent-id="${alpha.id}"]`).waitFor({ timeout: 10_000 })
    await expect.poll(() => other.locator('#detail #agent-result').textContent()).toContain('"slept": 0.1')
    await other.close()

    expect(pageErrors).toEqual([])
  })

  test('the new-run form says why it starts nothing: an empty task, an agent the server refuses', async () => {
    await page.goto(server.inspectorUrl)
    await page.locator('#connection[data-state="open"]').waitFor({ timeout: 10_000 })
    await page.locator('#new-run input[name="task"]').fill('   ')
    await page.locator('#new-run button').click()
    await expect
      .poll(() => page.locator('#new-run-error').textContent())
      .toBe('the task is empty: say what the run should do')
    await page.locator('#new-run input[name="agent"]').fill('nosuch')
    await page.locator('#new-run input[name="task"]').fill('go')
    await page.locator('#new-run button').click()
    await expect
      .poll(() => page.locator('#new-run-error').getAttribute('title'))
      .toMatch(/unknown agent "nosuch"/)
    // The refusal keeps to its line: the header's title stays on one.
    const title = await page.locator('header h1').boundingBox()
    expect(title!.height).toBeLessThan(30)
    await page.locator('#new-run input[name="agent"]').fill('')

    // An address with an agent but no run shows no agent (it said "Loading lead…" for ever).
    await page.goto(`${server.url}#agent=lead`)
    await page.locator('#connection[data-state="open"]').waitFor({ timeout: 10_000 })
    await expect.poll(() => page.locator('#detail').textContent()).toMatch(/Select an agent/)
  })

  test('answers an agent that waits on a person: approve its tool call, then answer its question', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cohort-inspector-'))
    const approvals = await startServer({
      runtime: createRuntime({ agents: [operator], model: approvalModel, store: fileStore(dir) }),
      port: 0,
    })
    const errors: string[] = []
    const tab = await browser.newPage({ viewport: { width: 1440, height: 900 } })
    tab.on('pageerror', (error) => errors.push(error.message))
    tab.on('console', (message) => {
      // The request the test makes fail on purpose is logged by Chromium as a failed resource.
      if (message.type() === 'error' && !message.text().includes('400 (Bad Request)'))
        errors.push(message.text())
    })
    const call = async <T>(path: string, init?: RequestInit): Promise<T> => {
      const response = await fetch(new URL(path, approvals.url), withToken(approvals, init))
      expect(response.ok, `${init?.method ?? 'GET'} ${path}: ${response.status}`).toBe(true)
      return (await response.json()) as T
    }
    const post = <T>(path: string, body: unknown) =>
      call<T>(path, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      })
    const openRun = async (runId: string) => {
      const item = tab.locator(`#runs [data-run-id="${runId}"]`)
      await item.waitFor({ timeout: 10_000 })
      await item.click()
      await expect.poll(() => tab.evaluate('location.hash')).toBe(`#run=${runId}`)
    }
    const detail = tab.locator('#detail')
    const approveButton = detail.locator('[data-action="approve"]')
    const rejectButton = detail.locator('[data-action="reject"]')

    try {
      await tab.goto(approvals.inspectorUrl)
      await tab.locator('#connection[data-state="open"]').waitFor({ timeout: 10_000 })

      // 1. The agent asks to deploy: the tree marks it, the panel shows the call and its arguments.
      const { runId } = await post<{ runId: string }>('/api/runs', { task: 'ship it' })
      await openRun(runId)
      const node = tab.locator('#tree [data-agent-id]').first()
      await tab.locator('#tree [data-awaiting="approval"]').waitFor({ timeout: 10_000 })
      expect(await node.getAttribute('data-awaiting')).toBe('approval')
      expect(await node.locator('.needs-you').isVisible()).toBe(true)
      expect(await node.textContent()).toContain('needs you')
      await node.click()
      const approval = detail.locator('#agent-awaiting[data-awaiting="approval"]')
      await approval.waitFor({ timeout: 10_000 })
      expect(await approval.locator('.tool-name').textContent()).toBe('deploy')
      expect(await approval.locator('[data-field="args"]').textContent()).toContain('"service": "api"')
      expect(await rejectButton.isEnabled()).toBe(true)
      expect(await detail.locator('[data-field="reason"]').isVisible()).toBe(true)
      mkdirSync(artifacts, { recursive: true })
      await tab.screenshot({ path: `${artifacts}inspector-approval.png` })

      // 2. Approve: the same agent now waits for an answer, which the page learns live.
      await approveButton.click()
      await tab.locator('#tree [data-awaiting="input"]').waitFor({ timeout: 10_000 })
      const question = detail.locator('#agent-awaiting[data-awaiting="input"]')
      await question.waitFor({ timeout: 10_000 })
      expect(await question.locator('.prompt').textContent()).toBe('which region?')
      expect(await detail.locator('[data-action-error]').count()).toBe(0)

      // 3. Answer: an empty one is not sent; the run goes on and completes with the answer in its result.
      await detail.locator('[data-action="answer"]').click()
      await expect
        .poll(() => detail.locator('[role="status"]').textContent())
        .toBe('Type an answer first (text, or JSON).')
      expect(await question.isVisible()).toBe(true)
      await detail.locator('[data-field="answer"]').fill('eu-west-1')
      await tab.screenshot({ path: `${artifacts}inspector-answer.png` })
      await detail.locator('[data-action="answer"]').click()
      await expect
        .poll(() => tab.locator(`#runs [data-run-id="${runId}"]`).getAttribute('data-state'), {
          timeout: 15_000,
        })
        .toBe('completed')
      const done = await call<RunView>(`/api/runs/${runId}`)
      expect(done.run.status).toBe('completed')
      expect(done.run.result).toContain('[call_tool ask] {"question":"which region?","answer":"eu-west-1"}')
      expect(done.agents[0]!.awaiting).toBeUndefined()
      await expect.poll(() => tab.locator('#tree [data-awaiting]').count()).toBe(0)
      await expect.poll(() => detail.locator('#agent-awaiting').count()).toBe(0)

      // 4. A failed request shows the server's error, and the buttons are disabled while it is in flight:
      // hold the page's Approve, approve through the API meanwhile (someone else was quicker), then let
      // the page's request through: the server refuses it with 400.
      const second = await post<{ runId: string }>('/api/runs', { task: 'ship it again' })
      await openRun(second.runId)
      await tab.locator('#tree [data-awaiting="approval"]').waitFor({ timeout: 10_000 })
      await tab.locator('#tree [data-agent-id]').first().click()
      await approveButton.waitFor({ timeout: 10_000 })
      let release!: () => void
      const released = new Promise<void>((resolve) => {
        release = resolve
      })
      let held = false
      await tab.route('**/api/runs/*/agents/*/approve', async (route) => {
        held = true
        await released
        await route.continue()
      })
      await approveButton.click()
      await expect.poll(() => held).toBe(true)
      expect(await approveButton.isDisabled()).toBe(true)
      expect(await rejectButton.isDisabled()).toBe(true)
      const waiting = await call<RunView>(`/api/runs/${second.runId}`)
      const { id: waitingId, awaiting } = waiting.agents[0]!
      const callId = awaiting!.callId
      await post(`/api/runs/${second.runId}/agents/${encodeURIComponent(waitingId)}/approve`, { callId })
      await detail.locator('#agent-awaiting[data-awaiting="input"]').waitFor({ timeout: 10_000 })
      release()
      const failure = detail.locator('[data-action-error]')
      await failure.waitFor({ timeout: 10_000 })
      expect(await failure.textContent()).toContain(
        `Approve failed: agent ${waitingId} of run ${second.runId} is not waiting for approval of call "${callId}"`,
      )
      await tab.unroute('**/api/runs/*/agents/*/approve')

      // An answer that is JSON is sent parsed; a new request clears the old error.
      const answer = detail.locator('[data-field="answer"]')
      await answer.fill('{"region": "us-east-2"}')
      await answer.press('Enter')
      await expect.poll(() => failure.count()).toBe(0)
      await expect
        .poll(async () => (await call<RunView>(`/api/runs/${second.runId}`)).run.status, { timeout: 15_000 })
        .toBe('completed')
      const parsed = await call<RunView>(`/api/runs/${second.runId}`)
      // The fixture's result is the agent's last two user messages; the second carries the `ask` tool's result.
      expect(parsed.run.result).toContain(
        '[call_tool ask] {"question":"which region?","answer":{"region":"us-east-2"}}',
      )

      // 5. Reject with a reason: the agent hears the reason and goes on to its question.
      const third = await post<{ runId: string }>('/api/runs', { task: 'ship it once more' })
      await openRun(third.runId)
      await tab.locator('#tree [data-awaiting="approval"]').waitFor({ timeout: 10_000 })
      await tab.locator('#tree [data-agent-id]').first().click()
      await detail.locator('[data-field="reason"]').fill('not on a Friday')
      await rejectButton.click()
      await tab.locator('#tree [data-awaiting="input"]').waitFor({ timeout: 10_000 })
      const rejected = await call<RunView>(`/api/runs/${third.runId}`)
      const agentId = rejected.agents[0]!.id
      const { messages } = await call<{ messages: { content: unknown }[] }>(
        `/api/runs/${third.runId}/agents/${encodeURIComponent(agentId)}`,
      )
      expect(JSON.stringify(messages)).toContain('not on a Friday')
      await post(`/api/runs/${third.runId}/cancel`, {})

      expect(errors).toEqual([])
    } finally {
      await tab.close()
      await approvals.close()
      rmSync(dir, { recursive: true, force: true })
    }
  })
  test('two agents waiting on the same call id: a click approves only the agent shown', async () => {
    const { runtime, deployed } = twoAgentsOnCall0()
    const target = await startServer({ runtime, root: 'lead', port: 0 })
    const view = async () => {
      const response = await fetch(new URL('/api/runs/both', target.url), withToken(target))
      return (await response.json()) as RunView
    }
    const waiting = async () =>
      (await view()).agents.flatMap((agent) => (agent.awaiting ? [[agent.id, agent.awaiting.callId]] : []))
    const tab = await browser.newPage({ viewport: { width: 1440, height: 900 } })
    const errors: string[] = []
    tab.on('pageerror', (error) => errors.push(error.message))
    try {
      await tab.goto(target.inspectorUrl)
      await tab.locator('#connection[data-state="open"]').waitFor({ timeout: 10_000 })
      const started = await callApi(target, '/api/runs', { task: 'ship both', runId: 'both' })
      expect(started.status).toBe(201)
      await tab.locator('#runs [data-run-id="both"]').click()
      await expect.poll(() => tab.locator('#tree [data-awaiting="approval"]').count()).toBe(2)
      expect(await waiting()).toEqual([
        ['lead.api', 'call_0'],
        ['lead.db', 'call_0'],
      ])

      const detail = tab.locator('#detail')
      await tab.locator('#tree [data-agent-id="lead.db"]').click()
      await detail.locator('[data-agent-id="lead.db"]').waitFor({ timeout: 10_000 })
      await detail.locator('[data-action="approve"]').click()
      await expect.poll(waiting, { timeout: 10_000 }).toEqual([['lead.api', 'call_0']])
      expect(deployed).toEqual(['db'])

      await tab.locator('#tree [data-agent-id="lead.api"]').click()
      await detail.locator('[data-agent-id="lead.api"]').waitFor({ timeout: 10_000 })
      await detail.locator('[data-field="reason"]').fill('not on a Friday')
      await detail.locator('[data-action="reject"]').click()
      await expect.poll(async () => (await view()).run.status, { timeout: 10_000 }).toBe('completed')
      expect((await view()).run.result).toEqual(['rejected: not on a Friday', 'deployed db'])
      expect(deployed).toEqual(['db'])
      expect(errors).toEqual([])
    } finally {
      await tab.close()
      await target.close()
    }
  })

  test('the runs list shows which runs wait on a person, and how many of their agents, without opening them', async () => {
    const { runtime } = twoAgentsOnCall0()
    const target = await startServer({ runtime, root: 'lead', port: 0 })
    const call = (path: string, body?: unknown) => callApi(target, path, body)
    const listed = async () =>
      ((await (await call('/api/runs')).json()) as { runs: { id: string; agentsAwaiting?: number }[] }).runs
    const tab = await browser.newPage({ viewport: { width: 1440, height: 900 } })
    const errors: string[] = []
    tab.on('pageerror', (error) => errors.push(error.message))
    try {
      await tab.goto(target.inspectorUrl)
      await tab.locator('#connection[data-state="open"]').waitFor({ timeout: 10_000 })
      expect((await call('/api/runs', { task: 'ship both', runId: 'both' })).status).toBe(201)
      // No run is opened: the list alone says that this one needs you, and for how many agents.
      const item = tab.locator('#runs [data-run-id="both"]')
      const badge = item.locator('.needs-you')
      await expect.poll(() => badge.getAttribute('data-waiting-count'), { timeout: 10_000 }).toBe('2')
      expect((await badge.textContent())?.trim()).toBe('needs you (2)')
      expect((await tab.locator('#runs-waiting').textContent())?.trim()).toBe('1 run needs you')
      expect(await tab.evaluate('location.hash')).toBe('')
      expect(await listed()).toEqual([expect.objectContaining({ id: 'both', agentsAwaiting: 2 })])

      // One answered (through the API, as another person would): the list follows.
      expect((await call('/api/runs/both/agents/lead.db/approve', { callId: 'call_0' })).status).toBe(202)
      await expect.poll(() => badge.getAttribute('data-waiting-count'), { timeout: 10_000 }).toBe('1')
      expect((await badge.textContent())?.trim()).toBe('needs you')
      // Opening the run keeps the list's count (the page counts the run's agents then).
      await item.click()
      await tab.locator('#tree [data-awaiting="approval"]').waitFor({ timeout: 10_000 })
      expect(await badge.getAttribute('data-waiting-count')).toBe('1')

      // The other answered: the run ends, and nothing needs you any more.
      expect(
        (await call('/api/runs/both/agents/lead.api/reject', { callId: 'call_0', reason: 'no' })).status,
      ).toBe(202)
      await expect.poll(() => item.getAttribute('data-state'), { timeout: 10_000 }).toBe('completed')
      await expect.poll(() => badge.count()).toBe(0)
      expect(await tab.locator('#runs-waiting').count()).toBe(0)
      expect(await listed()).toEqual([expect.objectContaining({ id: 'both', agentsAwaiting: 0 })])
      expect(errors).toEqual([])
    } finally {
      await tab.close()
      await target.close()
    }
  })

  test('a cancelled run and its agents look cancelled (grey), not failed (red)', async () => {
    const { runtime } = twoAgentsOnCall0()
    const target = await startServer({ runtime, root: 'lead', port: 0 })
    const post = (path: string, body: unknown) => callApi(target, path, body)
    const tab = await browser.newPage({ viewport: { width: 1440, height: 900 } })
    const errors: string[] = []
    tab.on('pageerror', (error) => errors.push(error.message))
    /** Whether an element's colour is a grey: its red, green and blue close together. */
    const grey = async (selector: string, property: 'backgroundColor' | 'borderLeftColor') => {
      const colour = await tab
        .locator(selector)
        .first()
        // The test's own types have no DOM: the page's window is reached through the element.
        .evaluate((el, name) => {
          type View = { getComputedStyle(element: unknown): Record<string, string> }
          const view = (el as unknown as { ownerDocument: { defaultView: View } }).ownerDocument.defaultView
          return view.getComputedStyle(el)[name]!
        }, property)
      const [r, g, b] = (colour.match(/\d+/g) ?? []).map(Number) as [number, number, number]
      return Math.max(r, g, b) - Math.min(r, g, b) <= 48 ? 'grey' : colour
    }
    try {
      await tab.goto(`${target.inspectorUrl}#run=stopped&agent=lead.db`)
      await tab.locator('#connection[data-state="open"]').waitFor({ timeout: 10_000 })
      expect((await post('/api/runs', { task: 'ship both', runId: 'stopped' })).status).toBe(201)
      await expect
        .poll(() => tab.locator('#tree [data-awaiting="approval"]').count(), { timeout: 10_000 })
        .toBe(2)
      expect((await post('/api/runs/stopped/cancel', {})).status).toBe(200)

      // The runs list: labelled cancelled, in grey.
      const item = '#runs [data-run-id="stopped"]'
      await expect
        .poll(() => tab.locator(item).getAttribute('data-state'), { timeout: 10_000 })
        .toBe('cancelled')
      expect(await tab.locator(`${item} .pill`).textContent()).toBe('cancelled')
      expect(await grey(`${item} .pill`, 'backgroundColor')).toBe('grey')
      expect(await grey(item, 'borderLeftColor')).toBe('grey')

      // The run's header: its reason in a neutral box, not an error's red one.
      await expect.poll(() => tab.locator('#run-header .pill').textContent()).toBe('cancelled')
      expect(await grey('#run-header .error-box', 'backgroundColor')).toBe('grey')

      // Every agent, in the tree, the timeline and the detail: cancelled, grey.
      await expect
        .poll(() => tab.locator('#tree [data-state="cancelled"]').count(), { timeout: 10_000 })
        .toBe(3)
      expect(await tab.locator('#tree [data-state="failed"]').count()).toBe(0)
      expect(await tab.locator('#tree .pill').allTextContents()).toEqual([
        'cancelled',
        'cancelled',
        'cancelled',
      ])
      expect(await grey('#tree [data-agent-id="lead.db"] .pill', 'backgroundColor')).toBe('grey')
      expect(await grey('#tree [data-agent-id="lead.db"] .dot', 'backgroundColor')).toBe('grey')
      expect(await tab.locator('#timeline .bar[data-state="cancelled"]').count()).toBe(3)
      expect(await grey('#timeline .bar[data-agent-id="lead.db"]', 'backgroundColor')).toBe('grey')
      const detail = tab.locator('#detail [data-agent-id="lead.db"]')
      await expect.poll(() => detail.locator('.pill').textContent(), { timeout: 10_000 }).toBe('cancelled')
      expect(await grey('#detail .detail-title .pill', 'backgroundColor')).toBe('grey')
      expect(await tab.locator('#agent-error h3').textContent()).toBe('Cancelled')
      expect(await grey('#agent-error .error-box', 'backgroundColor')).toBe('grey')
      mkdirSync(artifacts, { recursive: true })
      await tab.screenshot({ path: `${artifacts}inspector-cancelled.png` })
      expect(errors).toEqual([])
    } finally {
      await tab.close()
      await target.close()
    }
  })

  test('a run of 300 agents at work leaves the page mostly idle, its clock still advancing', async () => {
    // 300 workers that each sleep a minute: every one of them running, its bar growing with the clock.
    const crowd = scriptedModel({
      lead: [
        {
          action: 'launch_subagents',
          agents: Array.from({ length: 300 }, (_, i) => ({ agent: 'worker', task: '60', id: `w${i}` })),
        },
        { action: 'wait_for_subagents' },
        { action: 'finish', result: 'done' },
      ],
      worker: [
        (request) => ({ action: 'call_tool', tool: 'sleep', args: { seconds: Number(request.agent.task) } }),
        { action: 'finish', result: 'slept' },
      ],
    })
    const target = await startServer({
      runtime: createRuntime({
        agents: [lead, worker],
        model: crowd,
        limits: { maxChildrenPerLaunch: 300, maxAgents: 301 },
      }),
      port: 0,
    })
    const tab = await browser.newPage({ viewport: { width: 1440, height: 900 } })
    const errors: string[] = []
    tab.on('pageerror', (error) => errors.push(error.message))
    try {
      await tab.goto(`${target.inspectorUrl}#run=crowd`)
      await tab.locator('#connection[data-state="open"]').waitFor({ timeout: 10_000 })
      expect((await callApi(target, '/api/runs', { task: 'fan out', runId: 'crowd' })).status).toBe(201)
      await expect
        .poll(() => tab.locator('#timeline .bar[data-state="running"]').count(), { timeout: 30_000 })
        .toBeGreaterThanOrEqual(300)
      // The main thread's busy time over 5 s, as Chromium counts it. Moving stripes on every running
      // bar and a re-render of all 600 rows four times a second kept it busy all the time (5 s of 5).
      const cdp = await tab.context().newCDPSession(tab)
      await cdp.send('Performance.enable')
      const busy = async () =>
        (await cdp.send('Performance.getMetrics')).metrics.find((m) => m.name === 'TaskDuration')!.value
      const duration = () => tab.locator('#run-header [data-run-duration]').textContent()
      const before = await busy()
      const shown = await duration()
      await tab.waitForTimeout(5_000)
      // 1.2 s measured with both cores loaded, 5.2 s before the page was fixed: 3.5 tells the two apart on a slower machine.
      expect(await busy()).toBeLessThan(before + 3.5)
      // Less often, but the clock still moves (at least every 5 s).
      await expect.poll(duration, { timeout: 15_000 }).not.toBe(shown)
      expect(errors).toEqual([])
    } finally {
      await tab.close()
      await target.close()
    }
  }, 90_000)

  test('while the server is down an answer says it did not answer; after a restart the page reconnects and the answer goes through', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cohort-inspector-restart-'))
    const token = 'restart-token-0123456789'
    const runtime = () => createRuntime({ agents: [operator], model: approvalModel, store: fileStore(dir) })
    let target = await startServer({ runtime: runtime(), token, port: 0 })
    const port = Number(new URL(target.url).port)
    const tab = await browser.newPage({ viewport: { width: 1440, height: 900 } })
    try {
      await tab.goto(`${target.inspectorUrl}#run=restarted&agent=operator`)
      await tab.locator('#connection[data-state="open"]').waitFor({ timeout: 10_000 })
      expect((await callApi(target, '/api/runs', { task: 'ship it', runId: 'restarted' })).status).toBe(201)
      const approve = tab.locator('#detail [data-action="approve"]')
      await approve.waitFor({ timeout: 10_000 })

      await target.close()
      await tab.locator('#connection[data-state="closed"]').waitFor({ timeout: 10_000 })
      await approve.click()
      // Not the browser's "Failed to fetch": what happened, and what to do.
      await expect
        .poll(() => tab.locator('#detail [data-action-error]').textContent(), { timeout: 10_000 })
        .toMatch(/^Approve failed: the server did not answer .*; try again once the page says live$/)

      target = await startServer({ runtime: runtime(), token, port })
      await target.resumeInFlight()
      await tab.locator('#connection[data-state="open"]').waitFor({ timeout: 20_000 })
      expect(await tab.locator('#detail [data-action-error]').count()).toBe(0)
      await approve.click()
      await tab.locator('#tree [data-awaiting="input"]').waitFor({ timeout: 10_000 })
    } finally {
      await tab.close()
      await target.close()
      rmSync(dir, { recursive: true, force: true })
    }
  }, 60_000)

  test('an agent waiting for its dependencies says which, in the tree and in its detail', async () => {
    const { agents, model: planModel, release } = heldDependent()
    const target = await startServer({
      runtime: createRuntime({ agents, model: planModel }),
      root: 'lead',
      port: 0,
    })
    const tab = await browser.newPage({ viewport: { width: 1440, height: 900 } })
    try {
      await tab.goto(`${target.inspectorUrl}#run=dag&agent=lead.report`)
      await tab.locator('#connection[data-state="open"]').waitFor({ timeout: 10_000 })
      expect((await callApi(target, '/api/runs', { task: 'go', runId: 'dag' })).status).toBe(201)
      const node = tab.locator('#tree [data-agent-id="lead.report"]')
      await expect
        .poll(() => node.locator('.after').textContent(), { timeout: 10_000 })
        .toBe('after research-1, research-2')
      await expect
        .poll(() => tab.locator('#detail .facts').textContent(), { timeout: 10_000 })
        .toContain('afterlead.research-1, lead.research-2')
      release()
      await expect.poll(() => node.getAttribute('data-state'), { timeout: 10_000 }).toBe('completed')
      expect(await node.locator('.after').count()).toBe(0)
    } finally {
      release()
      await tab.close()
      await target.close()
    }
  })

  test('a page of another origin gets nothing from the socket or the API, while the signed-in inspector works', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cohort-inspector-attack-'))
    const target = await startServer({
      runtime: createRuntime({ agents: [operator], model: approvalModel, store: fileStore(dir) }),
      port: 0,
    })
    const port = new URL(target.url).port
    const call = async <T>(path: string, init?: RequestInit): Promise<T> => {
      const response = await fetch(new URL(path, target.url), withToken(target, init))
      expect(response.ok, `${init?.method ?? 'GET'} ${path}: ${response.status}`).toBe(true)
      return (await response.json()) as T
    }
    // The user's own socket: any run the attack started, or moved, would show here.
    const seen: string[] = []
    const witness = new WebSocket(`${target.url.replace('http', 'ws')}api/events`, {
      headers: { authorization: `Bearer ${target.token}` },
    })
    witness.on('message', (data) => seen.push(JSON.parse(String(data)).event.type))
    await new Promise((resolve) => witness.once('open', resolve))

    // The attacker: a page served from another origin on the same machine (as in the report).
    const attack = `
      const target = 'http://127.0.0.1:${port}'
      const result = { opened: [], messages: 0, posts: [], read: null }
      const sockets = ['ws://127.0.0.1:${port}/api/events', 'ws://localhost:${port}/api/events'].map((url) => {
        const socket = new WebSocket(url)
        socket.onopen = () => result.opened.push(url)
        socket.onmessage = () => result.messages++
        return new Promise((resolve) => { socket.onclose = resolve })
      })
      const post = (path, body) => fetch(target + path, { method: 'POST', mode: 'no-cors',
        headers: { 'Content-Type': 'text/plain; application/json' }, body: JSON.stringify(body) })
        .then((response) => result.posts.push(response.type), (error) => result.posts.push(String(error)))
      const callId = new URLSearchParams(location.search).get('callId')
      Promise.all([
        ...sockets,
        post('/api/runs', { task: 'started by another website' }),
        post('/api/runs/' + new URLSearchParams(location.search).get('runId') + '/agents/operator/approve', { callId }),
        fetch(target + '/api/runs').then((r) => r.text()).then((text) => { result.read = text }, (e) => { result.read = 'refused: ' + e.name }),
      ]).then(() => { window.attack = result })
    `
    const evil = createServer((_, res) => {
      res.writeHead(200, { 'content-type': 'text/html' })
      res.end(`<!doctype html><title>another website</title><script>${attack}</script>`)
    })
    await new Promise<void>((resolve) => evil.listen(0, '127.0.0.1', resolve))
    const evilUrl = `http://127.0.0.1:${(evil.address() as AddressInfo).port}/`

    // One browser: the inspector is signed in (its cookie is sent to the same site, any port).
    const context = await browser.newContext({ viewport: { width: 1440, height: 900 } })
    const errors: string[] = []
    try {
      const tab = await context.newPage()
      tab.on('pageerror', (error) => errors.push(error.message))
      await tab.goto(target.inspectorUrl)
      expect(tab.url()).toBe(target.url)
      expect(
        (await context.cookies()).map((cookie) => [cookie.name, cookie.httpOnly, cookie.sameSite]),
      ).toEqual([[`cohort_token_${port}`, true, 'Strict']])
      await tab.locator('#connection[data-state="open"]').waitFor({ timeout: 10_000 })
      const { runId } = await call<{ runId: string }>('/api/runs', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ task: 'ship it' }),
      })
      await tab.locator(`#runs [data-run-id="${runId}"]`).click()
      await tab.locator('#tree [data-awaiting="approval"]').waitFor({ timeout: 10_000 })
      const { agents } = await call<RunView>(`/api/runs/${runId}`)
      const callId = agents[0]!.awaiting!.callId
      seen.length = 0

      const page = await context.newPage()
      const sent: string[] = []
      page.on('request', (request) => {
        if (request.url().startsWith(`http://127.0.0.1:${port}/`)) sent.push(request.method())
      })
      await page.goto(`${evilUrl}?runId=${runId}&callId=${encodeURIComponent(callId)}`)
      const result = (
        await page.waitForFunction(() => (globalThis as { attack?: unknown }).attack, undefined, {
          timeout: 10_000,
        })
      ).jsonValue() as Promise<{ opened: string[]; messages: number; posts: string[]; read: string }>
      // No socket opened, no event came, nothing could be read. (The two posts get no answer the page
      // may see either: Cross-Origin-Resource-Policy keeps even the opaque one from it.)
      expect(await result).toEqual({
        opened: [],
        messages: 0,
        posts: [expect.stringMatching(/^(opaque|TypeError)/), expect.stringMatching(/^(opaque|TypeError)/)],
        read: 'refused: TypeError',
      })
      // The browser did send them (a no-cors POST needs no one's leave): the server is what refused them.
      expect(sent.sort()).toEqual(['GET', 'POST', 'POST'])
      await page.close()

      // Nothing started, nothing approved, nothing sent.
      const runs = await call<{ runs: { id: string }[] }>('/api/runs')
      expect(runs.runs.map((run) => run.id)).toEqual([runId])
      const after = await call<RunView>(`/api/runs/${runId}`)
      expect(after.agents[0]!.awaiting).toMatchObject({ kind: 'approval', callId })
      expect(seen).toEqual([])

      // The user's inspector works as before: approve by clicking, answer, and the tree follows live.
      await tab.locator('#tree [data-agent-id]').first().click()
      await tab.locator('#detail [data-action="approve"]').click()
      await tab.locator('#tree [data-awaiting="input"]').waitFor({ timeout: 10_000 })
      await tab.locator('#detail [data-field="answer"]').fill('eu-west-1')
      await tab.locator('#detail [data-action="answer"]').click()
      await expect
        .poll(() => tab.locator(`#runs [data-run-id="${runId}"]`).getAttribute('data-state'), {
          timeout: 15_000,
        })
        .toBe('completed')
      expect(seen).toContain('run.completed')

      // A browser without the link is told how to sign in, and shown nothing.
      const stranger = await browser.newPage()
      await stranger.goto(target.url)
      await stranger.locator('#auth-needed').waitFor({ timeout: 10_000 })
      expect(await stranger.locator('#auth-needed').textContent()).toMatch(/missing token.*\?token=/)
      expect(await stranger.locator('#runs [data-run-id]').count()).toBe(0)
      // Signed out, it stops asking: no socket opened again and again, refused each time.
      let attempts = 0
      stranger.on('websocket', () => attempts++)
      stranger.on('request', (request) => (request.url().includes('/api/') ? attempts++ : undefined))
      await stranger.waitForTimeout(6_000)
      expect(attempts).toBe(0)
      // So is one that opens an old link (a wrong token): the page, the token gone from its address.
      await stranger.goto(`${target.url}?token=${'z'.repeat(43)}`)
      await stranger.locator('#auth-needed').waitFor({ timeout: 10_000 })
      await expect
        .poll(() => stranger.locator('#auth-needed').textContent())
        .toMatch(/the link this browser opened holds another token than this server's/)
      expect(await stranger.locator('#connection').textContent()).toBe('signed out')
      expect(new URL(stranger.url()).search).toBe('')
      expect(await stranger.locator('#runs [data-run-id]').count()).toBe(0)
      await stranger.close()
      expect(errors).toEqual([])
    } finally {
      witness.close()
      await context.close()
      await new Promise((resolve) => evil.close(resolve))
      await target.close()
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
