import type { Awaiting } from '../agent/context.js'
import type { ErrorInfo } from '../errors.js'
import type { ProcessRecord } from '../models/command-model.js'
import type { ModelRetry, TokenUsage } from '../models/types.js'
import type { Conflict } from '../workspaces/workspaces.js'

interface RunEventBase {
  runId: string
  /** Epoch milliseconds. */
  at: number
  /** Milliseconds since the run started (in this process). */
  elapsedMs: number
}

interface AgentEventBase extends RunEventBase {
  agentId: string
  agentName: string
  depth: number
}

/**
 * How a person let an agent go on (`run.approve`, `run.reject`, `run.resume`), kept in the event
 * so the logs show who waited on what and how it was settled. An input's payload is left out: it may
 * be large or private, and the agent's record has it.
 */
export interface PersonAnswer {
  kind: 'approved' | 'rejected' | 'answered'
  callId: string
  tool: string
  /** A rejection's reason. */
  reason?: string
}

export type RunEvent = RunEventBase &
  (
    | { type: 'run.started'; agent: string; task: string; rootAgentId: string }
    | {
        type: 'run.resumed'
        agents: number
        /** Set when the stored run had already ended: the resume runs nothing and settles as it did. */
        ended?: 'completed' | 'failed' | 'cancelled'
      }
    | { type: 'run.completed'; result: unknown }
    | { type: 'run.failed'; error: ErrorInfo }
    | { type: 'run.cancelled'; reason: string }
    /** Stopped here without settling (`run.detach`, `runtime.shutdown`): stored, for `resume` to continue. */
    | { type: 'run.detached' }
  )

export type AgentEvent = AgentEventBase &
  (
    | { type: 'agent.started'; parentId: string | null; task: string }
    | {
        type: 'agent.launched'
        /**
         * `dependsOn`: the siblings (run-wide ids) whose results the child is given before it starts;
         * `runsAfter`: in a launch run one after another (a cycle), the one it waits for only.
         */
        children: { id: string; agent: string; task: string; dependsOn: string[]; runsAfter?: string[] }[]
      }
    | { type: 'agent.suspended'; waitingOn: string[]; awaiting?: Awaiting }
    | { type: 'agent.message'; from: string; text: string }
    | { type: 'agent.warning'; message: string }
    /** `answer`: what a person gave an agent that waited on them; absent when its children settled. */
    | { type: 'agent.resumed'; settled: string[]; answer?: PersonAnswer }
    | { type: 'agent.repair'; error: string; repairs: number }
    | { type: 'agent.completed'; result: unknown; durationMs: number }
    | { type: 'agent.failed'; error: ErrorInfo; durationMs: number }
    | { type: 'model.started'; turn: number; model: string }
    | { type: 'model.token'; turn: number; text: string }
    /** The model failed an attempt of this call and tries again after `waitMs` (a 429, a 5xx, a reset connection). */
    | ({ type: 'model.retrying'; turn: number } & ModelRetry)
    | {
        type: 'model.completed'
        turn: number
        durationMs: number
        usage?: TokenUsage
        /** `usage` is an estimate: the model's server reported none. */
        usageEstimated?: boolean
        cost?: number
        /** Attempts the adapter made again before this one answered (429s, 5xx, timeouts). */
        retries?: number
        process?: ProcessRecord
      }
    | { type: 'workspace.conflicts'; conflicts: Conflict[] }
    | {
        type: 'model.failed'
        turn: number
        durationMs: number
        error: ErrorInfo
        /** A process agent's failed turn: exit code, signal, stderr tail. */
        process?: ProcessRecord
      }
    | { type: 'tool.started'; callId: string; tool: string; args: unknown }
    | { type: 'tool.completed'; callId: string; tool: string; durationMs: number; result: unknown }
    | { type: 'tool.failed'; callId: string; tool: string; durationMs: number; error: ErrorInfo }
  )

export type CohortEvent = RunEvent | AgentEvent
export type CohortEventType = CohortEvent['type']

/** Every event type, for what comes in at run time (`run.on(type)`); the type checker keeps it whole. */
export const cohortEventTypes: readonly CohortEventType[] = Object.keys({
  'run.started': true,
  'run.resumed': true,
  'run.completed': true,
  'run.failed': true,
  'run.cancelled': true,
  'run.detached': true,
  'agent.started': true,
  'agent.launched': true,
  'agent.suspended': true,
  'agent.message': true,
  'agent.warning': true,
  'agent.resumed': true,
  'agent.repair': true,
  'agent.completed': true,
  'agent.failed': true,
  'model.started': true,
  'model.token': true,
  'model.retrying': true,
  'model.completed': true,
  'model.failed': true,
  'workspace.conflicts': true,
  'tool.started': true,
  'tool.completed': true,
  'tool.failed': true,
} satisfies Record<CohortEventType, true>) as CohortEventType[]

/** Distributes an event type over the union so `Omit` keeps each member's own fields. */
type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never
export type AgentEventInput = DistributiveOmit<AgentEvent, keyof AgentEventBase>
export type RunEventInput = DistributiveOmit<RunEvent, keyof RunEventBase>
