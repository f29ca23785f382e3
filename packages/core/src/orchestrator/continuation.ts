import { callStore, describeValue, InvalidInputError } from '../errors.js'
import type { ChatMessage } from '../models/types.js'
import { assertRunId } from '../persistence/codec.js'
import { readAgentRecord, readRunRecord } from '../persistence/read.js'
import { isValidAgentId, type RunStore } from '../persistence/records.js'

/**
 * A settled agent of a stored run whose session a new run's root continues: a run id (its root
 * agent), or a run id and an agent id.
 */
export type ContinueFrom = string | { runId: string; agentId?: string }

/** `continueFrom` checked: a run, and one of its agents (default: its root). */
export interface ContinueTarget {
  runId: string
  agentId?: string
}

/** The agent a run continues, as its record notes it (`RunRecord.continuedFrom`). */
export interface ContinuedFrom {
  runId: string
  agentId: string
}

/** What a new root takes from the agent it continues: where it was, and its messages. */
export interface Continuation {
  from: ContinuedFrom
  history: ChatMessage[]
}

/** `continueFrom` as given from JavaScript, checked at the call: a run id, or `{ runId, agentId? }`. */
export function checkContinueFrom(value: unknown): ContinueTarget | undefined {
  if (value === undefined) return undefined
  if (typeof value === 'string') {
    assertRunId(value)
    return { runId: value }
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new InvalidInputError(
      `continueFrom must be a run id or { runId, agentId? }, such as { runId: "r1", agentId: "lead" }; got ${describeValue(value)}`,
    )
  }
  const { runId, agentId, ...rest } = value as Record<string, unknown>
  const extra = Object.keys(rest)
  if (extra.length > 0)
    throw new InvalidInputError(`continueFrom takes runId and agentId only; got ${extra.join(', ')} too`)
  if (runId === undefined)
    throw new InvalidInputError(
      'continueFrom.runId is missing: name the run to continue, such as { runId: "r1", agentId: "lead" }',
    )
  assertRunId(runId)
  if (agentId === undefined) return { runId }
  if (!isValidAgentId(agentId))
    throw new InvalidInputError(
      `invalid continueFrom.agentId ${JSON.stringify(String(agentId).slice(0, 80))}: expected an agent id such as "lead" or "lead.worker"`,
    )
  return { runId, agentId }
}

/**
 * The session of a settled (completed or failed) agent of a stored run, read for a new run's root.
 * A run or agent not stored, or one not settled, is an `InvalidInputError` saying what to do.
 */
export async function readContinuation(
  config: { store: RunStore; storeTimeoutMs: number },
  from: ContinueTarget,
): Promise<Continuation> {
  const { store, storeTimeoutMs } = config
  const { runId } = from
  const run = await callStore('read of the run record', runId, storeTimeoutMs, () =>
    readRunRecord(store, runId),
  )
  if (!run)
    throw new InvalidInputError(
      `cannot continue run ${runId}: it is not in the store; name a run this runtime's store holds`,
    )
  const agentId = from.agentId ?? run.rootAgentId
  const agent = await callStore(`read of agent ${agentId}`, runId, storeTimeoutMs, () =>
    readAgentRecord(store, runId, agentId),
  )
  if (!agent)
    throw new InvalidInputError(
      `cannot continue run ${runId}'s agent ${agentId}: the run has no such agent; its root is ${run.rootAgentId}`,
    )
  if (agent.status !== 'completed' && agent.status !== 'failed') {
    const state = agent.status === 'idle' ? 'not started yet' : `still ${agent.status}`
    throw new InvalidInputError(
      `run ${runId}'s agent ${agentId} is ${state}: send it a message with run.send instead (runtime.resume the run first if it is not live), or continue it once it has completed or failed`,
    )
  }
  return { from: { runId, agentId }, history: continuedHistory(agent.snapshot.context.messages) }
}

/** What a settled agent's own calls left unanswered is answered so, as a model's API requires. */
const unanswered = '(no result: the earlier session ended here)'

/**
 * An agent's messages without its system message, every native tool call answered (its `finish`,
 * a call cut short by a failure), so that the new task can follow them.
 */
export function continuedHistory(messages: readonly ChatMessage[]): ChatMessage[] {
  const history: ChatMessage[] = []
  let open: string[] = []
  const close = () => {
    for (const id of open) history.push({ role: 'tool', content: unanswered, toolCallId: id })
    open = []
  }
  for (const message of messages) {
    if (message.role === 'system') continue
    if (message.role === 'tool') open = open.filter((id) => id !== message.toolCallId)
    else close()
    history.push(message)
    if (message.role === 'assistant') open = message.toolCalls?.map((call) => call.id) ?? []
  }
  close()
  return history
}
