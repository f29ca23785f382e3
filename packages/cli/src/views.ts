import type {
  AgentRecord,
  AgentStatus,
  Awaiting,
  ChatMessage,
  ErrorInfo,
  ProcessRecord,
  RunRecord,
  StoredRun,
} from '@cohort/core'
import { treeOrder } from './tree-order.js'

/** One agent as operators see it: `cohort show`, the HTTP API and the inspector. */
export interface AgentSummary {
  id: string
  name: string
  parentId: string | null
  depth: number
  status: AgentStatus
  task: string
  startedAt: number
  endedAt: number | null
  turns: number
  /** Time it was at work (its model and tool calls), not waiting for a place, its sub-agents or a person. */
  busyMs: number
  result?: unknown
  error?: Pick<ErrorInfo, 'code' | 'message'>
  /** Set while the agent waits on a person: an approval of a tool call, or an answer. */
  awaiting?: Awaiting
  /** A process agent's turns: how each command ended (exit code, signal, stderr tail, duration, workspace). */
  processes?: ProcessRecord[]
  /** The siblings (run-wide ids) it starts after: its `depends_on`, and in a launch run one after another, the one before. */
  dependsOn?: string[]
}

export interface RunView {
  run: RunRecord
  agents: AgentSummary[]
}

/** "run r1 has already completed", "... has already been cancelled": why a run that ended refuses a call (as core says it). */
export function runEnded(runId: string, status: string): string {
  return `run ${runId} has already ${status === 'cancelled' ? 'been cancelled' : status}`
}

export function agentSummary(record: AgentRecord): AgentSummary {
  const context = record.snapshot.context
  const summary: AgentSummary = {
    id: record.id,
    name: record.name,
    parentId: record.parentId,
    depth: record.depth,
    status: record.status,
    task: context.task,
    startedAt: context.startedAt,
    endedAt: context.endedAt,
    turns: context.turn,
    busyMs: Math.round(context.busyMs),
  }
  if (record.status === 'completed') summary.result = context.result
  if (context.error) summary.error = { code: context.error.code, message: context.error.message }
  if (context.awaiting && record.status === 'suspended') summary.awaiting = context.awaiting
  if (context.processes.length > 0) summary.processes = context.processes
  const after = [...context.dependsOn, ...context.runsAfter]
  if (after.length > 0) summary.dependsOn = after
  return summary
}

/** The run with its agents in tree order: each parent followed by its children, in launch order. */
export function runView(stored: StoredRun): RunView {
  return { run: stored.run, agents: treeOrder(stored.agents.map(agentSummary)) }
}

export function agentDetail(record: AgentRecord): { agent: AgentSummary; messages: readonly ChatMessage[] } {
  return { agent: agentSummary(record), messages: record.snapshot.context.messages }
}
