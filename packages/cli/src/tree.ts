import {
  type AgentStatus,
  type Awaiting,
  type CohortEvent,
  parsePlan,
  planAgentName,
  type RunRecord,
} from '@cohort/core'
import { treeOrder } from './tree-order.js'
import type { AgentSummary } from './views.js'

/** What the tree needs of an agent: a summary, plus the step it is on while it runs. */
export interface TreeNode {
  id: string
  name: string
  parentId: string | null
  depth: number
  status: AgentStatus
  startedAt: number
  endedAt: number | null
  step?: string
  /** The siblings (run-wide ids) it starts after. */
  dependsOn?: string[]
  result?: unknown
  error?: { code?: string; message: string }
}

/** What a line shows: the agent's status, or `cancelled` for a failed one whose error is a cancellation. */
type ShownState = AgentStatus | 'cancelled'

const stateColors: Record<ShownState, string> = {
  idle: '90',
  running: '36',
  suspended: '33',
  completed: '32',
  failed: '31',
  // Grey, as idle: a person or the run's end stopped it, nothing went wrong.
  cancelled: '90',
}
const stateMarks: Record<ShownState, string> = {
  idle: '·',
  running: '▶',
  suspended: '⏸',
  completed: '✔',
  failed: '✖',
  cancelled: '⊘',
}

function shownState(node: TreeNode): ShownState {
  return node.status === 'failed' && node.error?.code === 'CANCELLED' ? 'cancelled' : node.status
}

/** Characters of a line's detail (an error, the step) kept before the id is cut to make room. */
const minDetail = 24
/** Characters of an id kept however narrow the terminal. */
const minId = 16

/** The agents of a run as an indented tree, one line each: state, name, id, elapsed time, step or outcome. */
export function renderTree(
  nodes: Iterable<TreeNode>,
  options: { now?: number; colors?: boolean; outcomes?: boolean; width?: number } = {},
): string[] {
  const now = options.now ?? Date.now()
  const paint = (code: string, text: string) => (options.colors ? `\u001b[${code}m${text}\u001b[0m` : text)
  const lines: string[] = []
  for (const node of treeOrder(nodes)) {
    const elapsed = formatMs((node.endedAt ?? now) - node.startedAt)
    let detail = ''
    if (node.status === 'failed' && node.error) detail = node.error.message
    else if (node.status === 'completed' && options.outcomes) detail = `→ ${oneLine(node.result)}`
    else if (node.status === 'idle' && node.dependsOn) detail = startsAfter(node.dependsOn)
    else if (node.step && node.status !== 'completed') detail = node.step
    const shown = shownState(node)
    // A root's id is its name: said once.
    const named = node.id === node.name
    const head = `${'  '.repeat(node.depth)}${stateMarks[shown]} ${node.name}${named ? '' : ' '}`
    const status = `  ${shown.padEnd(9)} ${elapsed.padStart(7)}`
    const width = options.width ?? Number.POSITIVE_INFINITY
    // Cut to fit: first the id, from its start (its end, the agent's own id, is what tells siblings
    // apart, and the indentation shows the rest), keeping room for some detail; then the detail.
    let id = named ? '' : node.id
    const free = width - head.length - status.length
    const idRoom = Math.max(minId, free - (detail ? Math.min(detail.length, minDetail) + 2 : 0))
    if (id.length > idRoom) id = `…${id.slice(id.length - idRoom + 1)}`
    const room = width - head.length - id.length - status.length - 2
    if (detail.length > room) detail = room > 1 ? `${detail.slice(0, room - 1)}…` : ''
    const color = stateColors[shown]
    const line = `${paint(color, head)}${paint('2', id)}${paint(color, status)}${detail ? `  ${detail}` : ''}`
    lines.push(line)
  }
  return lines
}

/** Keeps the tree of one run up to date from its events. */
export class TreeState {
  readonly nodes = new Map<string, TreeNode>()

  static fromSummaries(agents: readonly AgentSummary[]): TreeState {
    const state = new TreeState()
    for (const agent of agents) state.nodes.set(agent.id, summaryNode(agent))
    return state
  }

  apply(event: CohortEvent): void {
    if (event.type === 'run.detached') {
      // Stopped and stored (Ctrl-C, a closed terminal): its agents are not at work any more.
      for (const node of this.nodes.values()) {
        if (node.endedAt !== null) continue
        node.endedAt = event.at
        node.step = 'stopped: `cohort resume` continues it'
      }
      return
    }
    if (!('agentId' in event)) return
    let node = this.nodes.get(event.agentId)
    if (event.type === 'agent.started') {
      node = {
        id: event.agentId,
        name: event.agentName,
        parentId: event.parentId,
        depth: event.depth,
        status: 'running',
        startedAt: node?.startedAt ?? event.at,
        endedAt: null,
      }
      this.nodes.set(event.agentId, node)
      return
    }
    if (!node) {
      node = {
        id: event.agentId,
        name: event.agentName,
        parentId: parentOf(event.agentId),
        depth: event.depth,
        status: 'running',
        startedAt: event.at,
        endedAt: null,
      }
      this.nodes.set(event.agentId, node)
    }
    switch (event.type) {
      case 'agent.launched':
        for (const child of event.children) {
          if (this.nodes.has(child.id)) continue
          this.nodes.set(child.id, {
            id: child.id,
            name: child.agent,
            parentId: event.agentId,
            depth: event.depth + 1,
            status: 'idle',
            startedAt: event.at,
            endedAt: null,
            step: 'waiting to start',
            ...(after(child).length > 0 && { dependsOn: after(child) }),
          })
        }
        node.step = `launched ${event.children.length}`
        break
      case 'agent.suspended':
        node.status = 'suspended'
        node.step = event.awaiting ? waitsFor(event.awaiting) : `waiting on ${event.waitingOn.join(', ')}`
        break
      case 'agent.resumed':
        node.status = 'running'
        node.step = 'resumed'
        break
      case 'model.started':
        node.status = 'running'
        node.step = `model call ${event.turn + 1}`
        break
      case 'tool.started':
        node.step = `tool ${event.tool}`
        break
      case 'agent.completed':
        node.status = 'completed'
        node.endedAt = event.at
        node.result = event.result
        delete node.step
        break
      case 'agent.failed':
        node.status = 'failed'
        node.endedAt = event.at
        node.error = { code: event.error.code, message: event.error.message }
        delete node.step
        break
    }
  }
}

/** A stored agent as a tree node: what it waits on, when it waits on a person, is its step. */
export function summaryNode(agent: AgentSummary): TreeNode {
  const { awaiting, ...rest } = agent
  return awaiting ? { ...rest, step: waitsFor(awaiting) } : rest
}

/** The siblings a launched child starts after. */
function after(child: { dependsOn: string[]; runsAfter?: string[] }): string[] {
  return [...child.dependsOn, ...(child.runsAfter ?? [])]
}

/** "after research-1, research-2": siblings by their own ids, as the model named them. */
function startsAfter(dependsOn: string[]): string {
  return `after ${dependsOn.map((id) => id.slice(id.lastIndexOf('.') + 1)).join(', ')}`
}

function waitsFor(awaiting: Awaiting): string {
  return awaiting.kind === 'approval'
    ? `waits for approval of ${awaiting.tool} (call ${awaiting.callId})`
    : `waits for an answer: ${awaiting.prompt}`
}

function parentOf(agentId: string): string | null {
  const dot = agentId.lastIndexOf('.')
  return dot < 0 ? null : agentId.slice(0, dot)
}

export function formatMs(ms: number): string {
  if (ms < 1_000) return `${Math.max(0, Math.round(ms))} ms`
  if (ms < 60_000) return `${(ms / 1_000).toFixed(1)} s`
  return `${Math.floor(ms / 60_000)} m ${Math.round((ms % 60_000) / 1_000)} s`
}

/**
 * A run's task on one line. A plan's (`runPlan`, `cohort parallel`) is its JSON: its steps'
 * tasks are shown instead (`plan of 3: fix a · fix b · fix c`).
 */
export function taskLine(run: Pick<RunRecord, 'agent' | 'task'>, max = 80): string {
  if (run.agent !== planAgentName) return oneLine(run.task, max)
  try {
    const { agents } = parsePlan(JSON.parse(run.task))
    return oneLine(`plan of ${agents.length}: ${agents.map((step) => step.task).join(' · ')}`, max)
  } catch {
    return oneLine(run.task, max)
  }
}

export function oneLine(value: unknown, max = 80): string {
  let text: string
  try {
    text = typeof value === 'string' ? value : (JSON.stringify(value) ?? String(value))
  } catch {
    text = String(value)
  }
  text = text.replace(/\s+/g, ' ')
  return text.length > max ? `${text.slice(0, max - 1)}…` : text
}
