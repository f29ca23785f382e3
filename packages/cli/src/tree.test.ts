import { PassThrough } from 'node:stream'
import {
  type CohortEvent,
  createRuntime,
  defineAgent,
  planAgentName,
  type Run,
  scriptedModel,
} from '@cohort/core'
import { describe, expect, test, vi } from 'vitest'
import { heldDependent } from '../../../tests/fixtures/held-dependent.js'
import { liveTree } from './live.js'
import { renderTree, summaryNode, type TreeNode, TreeState, taskLine } from './tree.js'
import { type AgentSummary, agentSummary } from './views.js'

/** A chain of agents whose ids grow with depth, as a deep hierarchy's do; the deepest failed. */
function chain(depth: number): TreeNode[] {
  const nodes: TreeNode[] = []
  let id = 'lead'
  for (let level = 0; level < depth; level++) {
    if (level > 0) id = `${id}.researcher-${level}`
    const last = level === depth - 1
    nodes.push({
      id,
      name: level === 0 ? 'lead' : 'researcher',
      parentId: level === 0 ? null : id.slice(0, id.lastIndexOf('.')),
      depth: level,
      status: last ? 'failed' : 'running',
      startedAt: 0,
      endedAt: last ? 1_000 : null,
      ...(last && { error: { message: 'TIMEOUT: the agent ran past its 30000 ms limit' } }),
    })
  }
  return nodes
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: colour codes begin with ESC
const plain = (line: string) => line.replace(/\u001b\[[0-9;]*m/g, '')

describe('the agent tree on a terminal of a given width', () => {
  test('no line is wider than the terminal: the id gives way from its start, and the error stays', () => {
    const lines = renderTree(chain(4), { now: 1_000, colors: true, width: 80 }).map(plain)
    for (const line of lines) expect(line.length, line).toBeLessThanOrEqual(80)
    const deepest = lines.at(-1)!
    expect(deepest).toMatch(/…[\w.-]*researcher-3 /)
    expect(deepest).toMatch(/ {2}TIMEOUT: the agent ran …$/)
    // Wide enough, nothing is cut.
    const wide = renderTree(chain(4), { now: 1_000, width: 400 })
    expect(wide.at(-1)).toContain(`${chain(4).at(-1)!.id} `)
    expect(wide.at(-1)).toMatch(/TIMEOUT: the agent ran past its 30000 ms limit$/)
  })

  test('a redraw moves up by the rows the last frame took, wrapped lines included', async () => {
    const out = Object.assign(new PassThrough(), {
      columns: 20,
      isTTY: true,
    }) as unknown as NodeJS.WriteStream
    const written: string[] = []
    out.on('data', (chunk: Buffer) => written.push(String(chunk)))
    const deep = defineAgent({ name: 'a-rather-long-agent-name', instructions: 'Finish.' })
    const runtime = createRuntime({
      agents: [deep],
      model: scriptedModel({ 'a-rather-long-agent-name': [{ action: 'finish', result: 1 }] }),
    })
    const run = runtime.start('a-rather-long-agent-name', 'go')
    const stop = liveTree(run, out)
    await run.result
    stop()
    stop()
    const frames = written.filter((text) => text.includes('\n'))
    expect(frames.length).toBeGreaterThanOrEqual(2)
    // The first frame: one agent whose line alone is wider than 20 columns.
    const first = plain(frames[0]!).trimEnd()
    const rows = Math.ceil(first.length / 20)
    expect(rows).toBeGreaterThan(1)
    expect(frames[1]).toMatch(new RegExp(`^\\u001b\\[${rows}F\\u001b\\[J`))
  })

  test('a tree taller than the terminal is cut to its rows, the last saying how many agents are not shown', () => {
    vi.useFakeTimers()
    try {
      const out = Object.assign(new PassThrough(), {
        columns: 80,
        rows: 10,
        isTTY: true,
      }) as unknown as NodeJS.WriteStream
      const written: string[] = []
      out.on('data', (chunk: Buffer) => written.push(String(chunk)))
      const workers = Array.from({ length: 29 }, (_, index) => ({
        ...summary(`lead.w${index}`, 1),
        parentId: 'lead',
      }))
      const run = { on: () => () => {} } as unknown as Run
      const stop = liveTree(run, out, [summary('lead', 0), ...workers])
      vi.advanceTimersByTime(100)
      stop()
      const frames = written.filter((text) => text.includes('\n')).map((frame) => plain(frame).split('\n'))
      // Nine rows and the cursor's: eight agents, then what is left out.
      const first = frames[0]!.slice(0, -1)
      expect(first).toHaveLength(9)
      expect(first.at(-1)).toBe('… 22 more agents not shown')
      // The last frame is drawn whole, once: the whole tree stays in the scrollback.
      expect(frames.at(-1)!.filter((line) => /running/.test(line))).toHaveLength(30)
    } finally {
      vi.useRealTimers()
    }
  })
})

function summary(id: string, depth: number): AgentSummary {
  return {
    id,
    name: depth === 0 ? 'lead' : 'worker',
    parentId: null,
    depth,
    status: 'running',
    task: 'work',
    startedAt: 0,
    endedAt: null,
    turns: 1,
    busyMs: 0,
  }
}

test("a plan's task (runPlan, cohort parallel) is shown as its steps' tasks, not its JSON", () => {
  const plan = {
    agents: [
      { id: 'task-1', agent: 'task', task: 'fix the login' },
      { id: 'task-2', agent: 'task', task: 'write the tests', depends_on: ['task-1'] },
    ],
  }
  expect(taskLine({ agent: planAgentName, task: JSON.stringify(plan) })).toBe(
    'plan of 2: fix the login · write the tests',
  )
  expect(taskLine({ agent: planAgentName, task: JSON.stringify(plan) }, 20)).toBe('plan of 2: fix the …')
  // Any other run's task, and a plan's that is not one, as it is.
  expect(taskLine({ agent: 'lead', task: '{"agents": []}' })).toBe('{"agents": []}')
  expect(taskLine({ agent: planAgentName, task: 'not json' })).toBe('not json')
})

test('a run stopped with Ctrl-C (detached) shows its agents stopped, their clocks still, not running', () => {
  const state = new TreeState()
  const base = { runId: 'r', agentName: 'lead', depth: 0 }
  state.apply({
    ...base,
    type: 'agent.started',
    agentId: 'lead',
    parentId: null,
    task: 't',
    at: 1_000,
    elapsedMs: 0,
  } as CohortEvent)
  state.apply({ type: 'run.detached', runId: 'r', at: 3_000, elapsedMs: 2_000 })
  const [line] = renderTree(state.nodes.values(), { now: 60_000 })
  expect(line).toMatch(/running +2\.0 s {2}stopped: `cohort resume` continues it$/)
})

test('a cancelled agent reads cancelled, in grey, not failed in red: live from events, and as stored', async () => {
  const worker = defineAgent({ name: 'worker', instructions: 'Work.' })
  const lead = defineAgent({ name: 'lead', instructions: 'Fan out.', subagents: [worker] })
  const runtime = createRuntime({
    agents: [lead, worker],
    model: scriptedModel(
      {
        lead: [{ action: 'launch_subagents', agents: [{ agent: 'worker', task: 'slow', id: 'w' }] }],
        worker: [{ action: 'finish', result: 1 }],
      },
      { latencyMs: (request) => (request.agent.name === 'worker' ? 10_000 : 0) },
    ),
  })
  const run = runtime.start('lead', 'go')
  const live = new TreeState()
  run.on('event', (event) => live.apply(event))
  await new Promise<void>((resolve) =>
    run.on('model.started', (event) => event.agentId === 'lead.w' && resolve()),
  )
  await run.cancel('stopped by a person')
  const stored = (await run.snapshot()).agents.map((record) => summaryNode(agentSummary(record)))
  for (const nodes of [live.nodes.values(), stored]) {
    const lines = renderTree(nodes, { now: Date.now(), colors: true })
    expect(lines).toHaveLength(2)
    for (const line of lines) {
      expect(plain(line)).toMatch(/^ *⊘ \S+( \S+)? {2}cancelled /)
      expect(line).toContain('\u001b[90m')
      expect(line).not.toContain('\u001b[31m')
    }
  }
  // A failure of its own stays failed, in red.
  const [failed] = renderTree(chain(1), { now: 1_000, colors: true })
  expect(plain(failed!)).toMatch(/^✖ lead {2}failed /)
  expect(failed).toContain('\u001b[31m')
})

test('an agent waiting for its dependencies says which, live from events and as stored; a root says its name once', async () => {
  const { agents, model, release } = heldDependent()
  const run = createRuntime({ agents, model }).start('lead', 'go')
  const live = new TreeState()
  run.on('event', (event) => live.apply(event))
  await vi.waitFor(() => expect(live.nodes.get('lead.research-2')?.step).toBe('model call 1'))
  const stored = (await run.snapshot()).agents.map((record) => summaryNode(agentSummary(record)))
  for (const nodes of [live.nodes.values(), stored]) {
    const lines = renderTree(nodes, { now: Date.now() }).map(plain)
    expect(lines.find((line) => line.includes('lead.report'))).toMatch(
      /idle .* {2}after research-1, research-2$/,
    )
    expect(lines[0]).toMatch(/^⏸ lead {2}suspended /)
  }
  release()
  expect(await run.result).toBe('done')
})
