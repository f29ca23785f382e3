import type { ThinkOutcome } from '../agent/agent-loop.js'
import type { AgentContext } from '../agent/context.js'
import { LimitExceededError, ModelError, toErrorInfo } from '../errors.js'
import type { AgentEventInput } from '../events/types.js'
import type { ProcessRecord } from '../models/command-model.js'
import { checkModelReply } from '../models/reply-schema.js'
import { afterRetries, maxRetryWaitMs, retrying } from '../models/retry.js'
import type { ChatMessage, ChatModel, ModelReply, ModelRequest } from '../models/types.js'
import { inboxMessage, repairFeedback } from '../protocol/feedback.js'
import { parseActions, toolCallsForHistory } from '../protocol/parse-actions.js'
import { repairText } from '../protocol/prompt.js'
import { redactError } from '../protocol/redact.js'
import { renderValue } from '../protocol/render-value.js'
import { estimateTokens } from '../scheduler/estimate-tokens.js'
import type { Slot, SlotRequest } from '../scheduler/scheduler.js'
import { promiseOf } from '../thenable.js'
import { type AgentEntry, tokensOf } from './agent-entry.js'
import type { EffectHost } from './effect-host.js'
import { callDigest } from './tool-call.js'

const noChildren: ReadonlySet<string> = new Set()

/**
 * The effect of `running.thinking`: one model call, once the scheduler grants a slot and within
 * the agent's and the run's limits. Asked only once the agent has its place (`Effects`), so an
 * agent queued for one holds no model call, request or tokens. Its outcome is the reply as the step it makes.
 */
export function think(run: EffectHost, entry: AgentEntry, signal: AbortSignal): Promise<ThinkOutcome> {
  let model: ChatModel
  let slot: Slot | undefined
  let request: SlotRequest
  try {
    const { context } = entry
    if (context.turn >= entry.limits.maxSteps) {
      throw new LimitExceededError(
        'maxSteps',
        `agent ${entry.id} made ${context.turn} model call${context.turn === 1 ? '' : 's'}, the limit is ${entry.limits.maxSteps} (maxSteps)`,
      )
    }
    const overBudget = budgetExceeded(run, entry, context, 0)
    if (overBudget) throw overBudget
    model = run.modelFor(entry.definition)
    request = {
      priority: context.priority,
      model: model.name,
      signal,
      // Reserved against token limits and the run's budget before the call starts; `release` settles it.
      estimatedTokens: estimateTokens({
        messages: context.messages,
        tools: run.kinds.of(entry.definition).specs,
        maxTokens: model.maxTokens,
      }),
      kind: entry.definition.name,
      budget: run.budget,
    }
    // A free slot is taken in this tick: the model call starts before the caller goes on.
    slot = run.scheduler.tryAcquire(request)
  } catch (error) {
    return Promise.reject(error)
  }
  if (slot) return callModel(run, entry, model, slot, signal)
  return run.scheduler.acquire(request).then((granted) => callModel(run, entry, model, granted, signal))
}

/**
 * One model call of a thinking agent, its slot granted. A chain of two callbacks, not an async
 * function: an async function's frame, which lives as long as the call, held every local of the
 * step (about 450 bytes of each agent waiting on its model).
 */
function callModel(
  run: EffectHost,
  entry: AgentEntry,
  model: ChatModel,
  slot: Slot,
  signal: AbortSignal,
): Promise<ThinkOutcome> {
  const { context } = entry
  const agentId = entry.id
  const turn = context.turn
  const { redact, workspaces } = run
  // Events are built only when someone listens: most runs have no listener, and a step is short.
  if (run.bus.hasListeners)
    run.emitUnlessStopped(signal, context, { type: 'model.started', turn, model: model.name })
  const started = performance.now()
  entry.busySince = started
  // A model that ignores the abort must not keep its slot: it goes back when the agent stops.
  let busy = true
  const endBusy = () => {
    if (!busy) return
    busy = false
    signal.removeEventListener('abort', stopped)
    run.busy.end()
  }
  const stopped = () => {
    endBusy()
    slot.release(0)
  }
  signal.addEventListener('abort', stopped, { once: true })
  const failed = (thrown: unknown): never => {
    endBusy()
    slot.release(0)
    const error = redactError(redact, thrown)
    // Kept in the agent's context and in the event: the stderr a command printed is redacted too.
    if (error instanceof ModelError && error.process) error.process = redactProcess(run, error.process)
    const durationMs = Math.round(performance.now() - started)
    const failure: AgentEventInput = {
      type: 'model.failed',
      turn,
      durationMs,
      error: toErrorInfo(error),
    }
    if (error instanceof ModelError && error.process) failure.process = error.process
    // A call stopped from outside (the agent ended, the run was detached) is told by that event, as a tool's is.
    run.emitUnlessStopped(signal, context, failure)
    throw error
  }
  run.busy.begin()
  let reply: Promise<ModelReply>
  // A secret may come split over two fragments: each is shown once no secret can begin in it.
  let tokens: ReturnType<typeof redact.fragments> | undefined
  try {
    const request: ModelRequest = {
      runId: run.runId,
      agent: {
        id: agentId,
        name: context.name,
        depth: context.depth,
        parentId: context.parentId,
        task: context.task,
      },
      turn,
      messages:
        context.inbox.length > 0 ? [...context.messages, inboxMessage(context.inbox)] : context.messages,
      tools: run.kinds.of(entry.definition).specs,
      onToken: (text) => {
        tokens ??= redact.fragments()
        const shown = tokens.push(text)
        if (shown) run.emitUnlessStopped(signal, context, { type: 'model.token', turn, text: shown })
      },
      onRetry: (retry) =>
        run.emitUnlessStopped(signal, context, {
          type: 'model.retrying',
          turn,
          ...retry,
          error: redact(retry.error),
        }),
      signal,
    }
    if (workspaces) request.workspace = () => workspaces.ensure(run.runId, agentId)
    const called = Promise.resolve(model.complete(request))
    // Retried by the runtime only once it failed: a call that succeeds costs what it did before.
    reply = model.handlesRetries
      ? called
      : called.catch((error: unknown) =>
          retried(model, request, run.scheduler.maxModelRetries, error, () => tokens !== undefined),
        )
  } catch (error) {
    return promiseOf(() => failed(error))
  }
  return reply.then((answer) => {
    let cleaned: ModelReply
    try {
      cleaned = redactReply(run, checkModelReply(model.name, answer))
    } catch (error) {
      return failed(error)
    }
    endBusy()
    const rest = tokens?.end()
    if (rest) run.emitUnlessStopped(signal, context, { type: 'model.token', turn, text: rest })
    return thought(run, entry, context, turn, slot, started, cleaned, signal)
  }, failed)
}

/**
 * The reply of a call whose first attempt failed (`firstFailure`), its transient failures retried
 * by the runtime (the model does not retry its own); `shown` says whether a fragment was shown.
 */
async function retried(
  model: ChatModel,
  request: ModelRequest,
  maxRetries: number,
  firstFailure: unknown,
  shown: () => boolean,
): Promise<ModelReply> {
  let first: Promise<ModelReply> | undefined = Promise.reject(firstFailure)
  const attempt = (began: () => void) => {
    const call = first ?? Promise.resolve(model.complete(request))
    first = undefined
    // A call that showed a fragment is not tried again: its listeners would see the text twice.
    return call.catch((error: unknown) => {
      if (shown()) began()
      throw error
    })
  }
  const { value, retries } = await retrying(attempt, afterRetries, {
    maxRetries,
    maxWaitMs: maxRetryWaitMs,
    signal: request.signal,
    onRetry: request.onRetry,
  })
  // A reply that is no object is left for checkModelReply to refuse.
  return retries > 0 && typeof value === 'object' && value !== null ? { ...value, retries } : value
}

/** What the model said, as the step it makes: its actions parsed, its tokens booked. */
function thought(
  run: EffectHost,
  entry: AgentEntry,
  context: AgentContext,
  turn: number,
  slot: Slot,
  started: number,
  reply: ModelReply,
  signal: AbortSignal,
): ThinkOutcome {
  const tokens = (reply.usage?.promptTokens ?? 0) + (reply.usage?.completionTokens ?? 0)
  // Books the tokens in the run's budget too.
  slot.release(tokens)
  const durationMs = performance.now() - started
  if (run.bus.hasListeners) {
    const completed: AgentEventInput = {
      type: 'model.completed',
      turn,
      durationMs: Math.round(durationMs),
    }
    if (reply.usage) completed.usage = reply.usage
    if (reply.usageEstimated) completed.usageEstimated = true
    if (reply.cost !== undefined) completed.cost = reply.cost
    if (reply.retries) completed.retries = reply.retries
    if (reply.process) completed.process = reply.process
    run.emitUnlessStopped(signal, context, completed)
  }
  // Over a token budget after the call: the reply and its tokens are still the agent's (its
  // metrics count what was spent), and the step fails it.
  const exceeded = budgetExceeded(run, entry, context, tokens)

  // An oversized reply is refused by the parser; the history keeps only its beginning.
  const assistant: ChatMessage = { role: 'assistant', content: renderValue(reply.text ?? '', 200_000) }
  if (reply.toolCalls?.length) assistant.toolCalls = toolCallsForHistory(reply.toolCalls)
  let parse = parseActions(reply, {
    tools: run.kinds.of(entry.definition).tools,
    subagents: entry.definition.subagents,
    output: entry.definition.output,
    childIds:
      context.children.length === 0 ? noChildren : new Set(context.children.map((child) => child.localId)),
  })
  if (!parse.ok && reply.refusal) {
    parse = {
      ok: false,
      error: `the model refused: "${renderValue(reply.refusal, 500)}"; the reply holds no action. If the task cannot be done, finish with the reason`,
    }
  } else if (!parse.ok && reply.finishReason === 'length') {
    parse = {
      ok: false,
      error: `the reply was cut off at the output token limit (max_tokens) before it was complete (${parse.error}); answer in fewer tokens`,
    }
  }
  if (parse.ok) {
    for (let index = 0; index < parse.actions.length; index++) {
      const action = parse.actions[index]!
      action.key = `${turn}.${index}`
      // Digested as the model gave it, before a store may reorder its arguments' keys.
      if (action.action === 'call_tool') action.digest = callDigest(action)
    }
  }
  const outcome: ThinkOutcome = {
    assistant,
    parse,
    inboxConsumed: context.inbox.length,
    feedback: parse.ok
      ? []
      : repairFeedback(reply.toolCalls?.map((call) => call.id) ?? [], repairText(parse.error)),
    durationMs,
  }
  if (reply.usage) outcome.usage = reply.usage
  if (reply.cost !== undefined) outcome.cost = reply.cost
  if (reply.retries) outcome.retries = reply.retries
  if (reply.process) outcome.process = reply.process
  if (exceeded) outcome.exceeded = toErrorInfo(exceeded)
  return outcome
}

function redactReply(run: EffectHost, reply: ModelReply): ModelReply {
  const cleaned: ModelReply = { ...reply }
  if (reply.text !== undefined) cleaned.text = run.redact(reply.text)
  if (reply.toolCalls)
    cleaned.toolCalls = reply.toolCalls.map((call) => ({ ...call, arguments: run.redact(call.arguments) }))
  if (reply.process) cleaned.process = redactProcess(run, reply.process)
  return cleaned
}

/** A process turn's record with its stderr redacted: a command may print a key it was given. */
function redactProcess(run: EffectHost, record: ProcessRecord): ProcessRecord {
  return { ...record, stderrTail: run.redact(record.stderrTail) }
}

/** The limit the agent or the run went over with its tokens, if either did. */
function budgetExceeded(
  run: EffectHost,
  entry: AgentEntry,
  context: AgentContext,
  justUsed: number,
): LimitExceededError | undefined {
  const agentTokens = tokensOf(context) + justUsed
  const { maxAgentTokens, maxRunTokens } = entry.limits
  if (maxAgentTokens !== null && agentTokens > maxAgentTokens) {
    return new LimitExceededError(
      'maxAgentTokens',
      `agent ${entry.id} used ${agentTokens} tokens, over its budget of ${maxAgentTokens} (maxAgentTokens)`,
    )
  }
  // Reservations keep a run within its budget unless a call used more than its estimate.
  if (maxRunTokens !== null && run.budget.used > maxRunTokens) {
    return new LimitExceededError(
      'maxRunTokens',
      `run ${run.runId} used ${run.budget.used} tokens, over its budget of ${maxRunTokens} (maxRunTokens)`,
    )
  }
  return undefined
}
