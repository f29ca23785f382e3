import { z } from 'zod'
import type { ErrorInfo } from '../errors.js'
import { processRecordSchema } from '../models/process-record.js'
import type { ChatMessage } from '../models/types.js'
import { type Action, actionNames, isActionName } from '../protocol/actions.js'

export type AgentStatus = 'idle' | 'running' | 'suspended' | 'completed' | 'failed'

/** What a parent receives for each awaited child. */
export interface ChildResult {
  id: string
  agent: string
  status: 'completed' | 'failed'
  result?: unknown
  error?: ErrorInfo
  /** The child failed (a timeout) and `result` is its configured fallback value. */
  fallback?: true
}

// One schema per shape: an agent's context is defined here once; its type (`z.infer`) and the
// validation of a context read back from a store both come from it.

// `limit`, `status` and `retries` were added later: a record without them still reads, and an
// older reader drops them.
export const errorInfoSchema = z.object({
  name: z.string(),
  code: z.string(),
  message: z.string(),
  limit: z.string().exactOptional(),
  status: z.number().int().exactOptional(),
  retries: z.number().int().min(0).exactOptional(),
})

const toolCallSchema = z.object({
  id: z.string(),
  name: z.string(),
  arguments: z.union([z.string(), z.record(z.string(), z.unknown())]),
})

export const chatMessageSchema = z.discriminatedUnion('role', [
  z.object({ role: z.literal('system'), content: z.string() }),
  z.object({ role: z.literal('user'), content: z.string() }),
  z.object({
    role: z.literal('assistant'),
    content: z.string(),
    toolCalls: z.array(toolCallSchema).exactOptional(),
  }),
  z.object({ role: z.literal('tool'), content: z.string(), toolCallId: z.string() }),
])

/** An action of a stored reply, not yet carried out: checked when its effect runs, as when it was parsed. */
const pendingActionSchema = z.custom<Action>(
  (value) =>
    typeof value === 'object' && value !== null && isActionName((value as { action?: unknown }).action),
  { error: `expected an action with "action" one of ${actionNames.join(', ')}` },
)

/** A child as its parent knows it: set at launch, never rewritten when the child settles. */
export const childLinkSchema = z.object({
  /** The parent's name for the child (what the model waits on). */
  localId: z.string(),
  /** Run-wide agent id. */
  id: z.string(),
  agent: z.string(),
  task: z.string(),
})
export type ChildLink = z.infer<typeof childLinkSchema>

/** What an agent suspended for the outside world waits on. */
export const awaitingSchema = z.object({
  kind: z.enum(['approval', 'input']),
  /** The tool call it concerns: `run.approve(agentId, callId)`, `run.reject(agentId, callId, reason)`. */
  callId: z.string(),
  /** The action's key (`turn.index`): answers are kept under it. */
  key: z.string(),
  tool: z.string(),
  args: z.unknown(),
  prompt: z.string(),
})
export type Awaiting = z.infer<typeof awaitingSchema>

export const answerSchema = z.union([
  z.object({ approved: z.literal(true) }),
  z.object({ payload: z.unknown() }),
])
export type Answer = z.infer<typeof answerSchema>

/** The whole state of an agent: plain data, stored at every step. Unknown extra fields are kept. */
export const agentContextSchema = z.looseObject({
  runId: z.string(),
  agentId: z.string(),
  name: z.string(),
  parentId: z.string().nullable(),
  depth: z.number().int().min(0),
  task: z.string(),
  messages: z.array(chatMessageSchema),
  /** Actions of the last reply not yet carried out, in order. */
  pending: z.array(pendingActionSchema),
  children: z.array(childLinkSchema),
  /** Local ids whose results were already handed to the model. */
  delivered: z.array(z.string()),
  /** Local ids awaited while suspended, and the native call id of that wait. */
  waitingOn: z.array(z.string()).nullable(),
  waitCallId: z.string().nullable(),
  /** Sibling agent ids (run-wide) that must complete before this agent starts: their results are its to read. */
  dependsOn: z.array(z.string()),
  /**
   * Sibling agent ids that must complete before it starts, whose results it is not given: the agent
   * just before it in a launch run one after another (a cycle, `onCycle: 'sequential'`). Absent in
   * records written before it.
   */
  runsAfter: z.array(z.string()).default(emptyList),
  /** Higher runs first when model calls are queued. */
  priority: z.number(),
  /** Wall-clock limit in ms, and the epoch ms it ends at (set when the agent starts). */
  timeoutMs: z.number().nullable(),
  deadline: z.number().nullable(),
  /** What the parent receives if this agent times out. */
  fallback: z.object({ value: z.unknown() }).nullable(),
  /** Messages from other agents or the outside, delivered into the next model turn. */
  inbox: z.array(z.object({ from: z.string(), text: z.string() })),
  /**
   * Ids of the messages other agents sent it (sender and action key), kept after the inbox is read:
   * a send its sender runs again after a crash is not delivered twice. Absent in records written before it.
   */
  receivedMessages: z.array(z.string()).default(emptyList),
  /** Set while suspended for an approval or for input. */
  awaiting: awaitingSchema.nullable(),
  /** Approvals and inputs received, by action key. */
  answers: z.record(z.string(), answerSchema),
  /** Model calls made so far. */
  turn: z.number().int().min(0),
  /** Consecutive unusable replies. */
  repairs: z.number().int().min(0),
  usage: z.object({ promptTokens: z.number(), completionTokens: z.number(), cost: z.number() }),
  /** Time spent in model calls and tools, and model retries, for metrics. */
  busyMs: z.number().min(0),
  retries: z.number().int().min(0),
  /** Turns of a process agent: exit code, stderr tail, duration. */
  processes: z.array(processRecordSchema),
  /** Files changed by more than one child of a parallel group, found when the group settled. */
  conflicts: z.array(z.object({ file: z.string(), agents: z.array(z.string()) })),
  startedAt: z.number(),
  endedAt: z.number().nullable(),
  /** Set once completed: the `finish` value. */
  result: z.unknown().exactOptional(),
  /** Set once failed. */
  error: errorInfoSchema.exactOptional(),
})
export type AgentContext = z.infer<typeof agentContextSchema>

export interface AgentInput {
  runId: string
  agentId: string
  name: string
  parentId: string | null
  depth: number
  task: string
  /** The kind's system message: one object shared by every agent of the kind (never changed). */
  systemMessage: ChatMessage
  /**
   * An earlier session's messages, without its system message, put between the system message and
   * the task: the root of a run started with `continueFrom`.
   */
  history?: readonly ChatMessage[]
  dependsOn?: string[]
  runsAfter?: string[]
  priority?: number
  timeoutMs?: number | null
  fallback?: { value: unknown } | null
}

/** A new empty list (kept as a function: a stored record shares no array between its fields). */
export function emptyList<T>(): T[] {
  return []
}

/** The list without its first item; the shared empty list when nothing is left (most steps). */
export function withoutFirst<T>(items: readonly T[]): T[] {
  return items.length <= 1 ? emptyList() : items.slice(1)
}

/** The agents that must complete before this one starts: those it depends on, then those it runs after. */
export function awaitedAgents(context: Pick<AgentContext, 'dependsOn' | 'runsAfter'>): string[] {
  return context.runsAfter.length === 0 ? context.dependsOn : [...context.dependsOn, ...context.runsAfter]
}

/** Where an action stands in the agent's history (`turn.index`); the turn alone for an action parsed without one. */
export function actionKey(context: Pick<AgentContext, 'turn'>, action: Action): string {
  return action.key ?? String(context.turn)
}

export function initialContext(input: AgentInput): AgentContext {
  return {
    runId: input.runId,
    agentId: input.agentId,
    name: input.name,
    parentId: input.parentId,
    depth: input.depth,
    task: input.task,
    messages: [input.systemMessage, ...(input.history ?? []), { role: 'user', content: input.task }],
    pending: emptyList(),
    children: emptyList(),
    delivered: emptyList(),
    waitingOn: null,
    waitCallId: null,
    dependsOn: input.dependsOn ?? emptyList(),
    runsAfter: input.runsAfter ?? emptyList(),
    priority: input.priority ?? 0,
    timeoutMs: input.timeoutMs ?? null,
    deadline: null,
    fallback: input.fallback ?? null,
    inbox: emptyList(),
    receivedMessages: emptyList(),
    awaiting: null,
    answers: {},
    turn: 0,
    repairs: 0,
    usage: { promptTokens: 0, completionTokens: 0, cost: 0 },
    busyMs: 0,
    retries: 0,
    processes: emptyList(),
    conflicts: emptyList(),
    startedAt: Date.now(),
    endedAt: null,
  }
}
