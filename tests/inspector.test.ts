import { existsSync, mkdirSync } from 'node:fs'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import { createRuntime, defineAgent, type ModelRequest, scriptedModel, sleep } from '@cohort/core'
import { afterAll, beforeAll, describe, expect, test } from 'vitest'
// playwright-core is a devDependency of @cohort/cli, so it resolves from there, not from the repository root.
import type { Browser, Page } from '../packages/cli/node_modules/playwright-core/index.js'
import { type CohortServer, startServer } from '../packages/cli/src/server/server.js'
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

test.runIf(!hasChromium && process.env.CI === 'true')('Chromium is installed (required under CI)', () => {
  expect(existsSync(chromiumPath), `${chromiumPath} is required to test the web inspector`).toBe(true)
})

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

interface AgentSummary {
  id: string
  name: string
  status: string
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
    const response = await fetch(new URL(path, server.url), init)
    expect(response.ok, `${init?.method ?? 'GET'} ${path}: ${response.status}`).toBe(true)
    return (await response.json()) as T
  }

  test('shows a run live: the tree fills in, bars overlap, and an agent shows its messages and result', async () => {
    await page.goto(server.url)
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
    const firstWorker = await nodes.nth(1).getAttribute('data-state')
    expect(['idle', 'running', 'suspended']).toContain(firstWorker)
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

    // A deep link selects the run and the agent.
    const other = await browser.newPage()
    await other.goto(`${server.url}#run=${runId}&agent=${encodeURIComponent(alpha.id)}`)
    await other.locator(`#detail [data-agent-id="${alpha.id}"]`).waitFor({ timeout: 10_000 })
    await expect.poll(() => other.locator('#detail #agent-result').textContent()).toContain('"slept": 0.1')
    await other.close()

    expect(pageErrors).toEqual([])
  })
})
