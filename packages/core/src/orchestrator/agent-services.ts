import { createHash } from 'node:crypto'
import type { ActOutcome, SettledGroup, ThinkOutcome } from '../agent/agent-loop.js'
import type { AgentContext, ChildResult } from '../agent/context.js'
import type { AgentDefinition } from '../agent/define-agent.js'
import { CohortError, LimitExceededError, ModelError, toErrorInfo } from '../errors.js'
import type { EventBus } from '../events/event-bus.js'
import type { AgentEventInput } from '../events/types.js'
import type { ChatMessage, ChatModel, ModelReply, ModelRequest, ToolSpec } from '../models/types.js'
import type { Action } from '../protocol/actions.js'
import { actionReply, inboxMessage, renderValue, repairFeedback } from '../protocol/feedback.js'
import { parseActions } from '../protocol/parse-actions.js'
import { protocolToolSpecs, repairText } from '../protocol/prompt.js'
import type { Redactor } from '../protocol/redact.js'
import { estimateTokens } from '../scheduler/estimate-tokens.js'
import type { Scheduler, Slot, SlotRequest } from '../scheduler/scheduler.js'
import type { TokenBudget } from '../scheduler/token-budget.js'
import { isThenable, promiseOf } from '../thenable.js'
import { type AnyTool, abortableSleep, SuspendRequest, type ToolContext } from '../tools/define-tool.js'
import type { Workspaces } from '../workspaces/workspaces.js'
import { type AgentEntry, childResult, tokensOf } from './agent-entry.js'
import type { LaunchOutcome } from './launch.js'
import type { BusyTracker } from './metrics.js'

type ToolAction = Extract<Action, { action: 'call_tool' }>
type LaunchAction = Extract<Action, { action: 'launch_subagents' }>

const noChildren: ReadonlySet<string> = new Set()

/**
 * The side effects of an agent's states, run by the orchestrator on its machine's behalf:
 * `running.thinking` → `think`, `running.acting` → `act`, `suspended.children` →
 * `awaitChildren`. Each outcome is sent back to the agent's actor as an event.
 */
export interface AgentServices {
  think(entry: AgentEntry, signal: AbortSignal): Promise<ThinkOutcome>
  act(entry: AgentEntry, action: Action, signal: AbortSignal): Promise<ActOutcome>
  awaitChildren(entry: AgentEntry, ids: string[], signal: AbortSignal): Promise<SettledGroup>
}

/** What the effects need of their run: the narrow side of the orchestrator they see. */
export interface EffectHost {
  readonly runId: string
  readonly registry: ReadonlyMap<string, AgentEntry>
  readonly bus: EventBus
  readonly scheduler: Scheduler
  readonly redact: Redactor
  readonly workspaces: Workspaces | undefined
  readonly busy: BusyTracker
  /** Tokens the run used (`maxRunTokens`), and those reserved by its calls in flight. */
  readonly budget: TokenBudget
  modelFor(definition: AgentDefinition): ChatModel
  emitAgent(context: AgentContext, event: AgentEventInput): void
  launch(parent: AgentEntry, action: LaunchAction, signal: AbortSignal): Promise<LaunchOutcome>
  deliverMessage(recipient: AgentEntry, from: string, text: string): void
  /** The agent cannot go on here: it waits on agents that run in other processes (segments). */
  park(reason: 'children'): void
}

/** The side effects of agents, bound to their run. */
export function createAgentServices(run: EffectHost): AgentServices {
  const clean = run.redact
  const workspaces = run.workspaces
  // What depends only on an agent's definition (its tools by name, the functions offered to the model) is built once per kind.
  const kinds = new Map<string, { tools: Map<string, AnyTool>; specs: ToolSpec[] }>()
  const kindOf = (entry: AgentEntry) => {
    let kind = kinds.get(entry.definition.name)
    if (!kind) {
      kind = {
        tools: new Map(entry.definition.tools.map((tool) => [tool.name, tool])),
        specs: protocolToolSpecs(entry.definition),
      }
      kinds.set(entry.definition.name, kind)
    }
    return kind
  }
  const toolsOf = (entry: AgentEntry) => kindOf(entry).tools

  return {
    think(entry, signal) {
      let model: ChatModel
      let slot: Slot | undefined
      let request: SlotRequest
      try {
        const { context } = entry
        if (context.turn >= entry.limits.maxSteps) {
          throw new LimitExceededError(
            'maxSteps',
            `agent made ${context.turn} model calls, the limit is ${entry.limits.maxSteps} (maxSteps)`,
          )
        }
        const overBudget = budgetExceeded(entry, context, 0)
        if (overBudget) throw overBudget
        model = run.modelFor(entry.definition)
        request = {
          priority: context.priority,
          model: model.name,
          signal,
          // Reserved against token limits and the run's budget before the call starts; `release` settles it.
          estimatedTokens: estimateTokens({
            messages: context.messages,
            tools: kindOf(entry).specs,
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
      if (slot) return callModel(entry, model, slot, signal)
      return run.scheduler.acquire(request).then((granted) => callModel(entry, model, granted, signal))
    },

    act(entry, action, signal) {
      const { context } = entry
      switch (action.action) {
        case 'launch_subagents':
          return launch(entry, action, signal)
        case 'call_tool':
          return runTool(entry, context, action, signal)
        case 'send_message':
          return promiseOf(() => ({
            messages: [actionReply(action, sendMessage(entry, context, action.to, action.text))],
          }))
        default:
          return Promise.reject(
            new CohortError('UNEXPECTED_ACTION', `action ${action.action} is not executed as a step`),
          )
      }
    },

    awaitChildren(entry, localIds, signal) {
      const { context } = entry
      const byLocalId = new Map(context.children.map((child) => [child.localId, child]))
      const childOf = (localId: string) => {
        const link = byLocalId.get(localId)
        return link && run.registry.get(link.id)
      }
      const settled = new Promise<ChildResult[]>((resolve, reject) => {
        let remaining = 0
        const collect = () =>
          localIds.map((localId): ChildResult => {
            const child = childOf(localId)
            if (!child) {
              const error = {
                name: 'Error',
                code: 'MISSING_AGENT',
                message: `no record of sub-agent ${localId}`,
              }
              return {
                id: localId,
                agent: byLocalId.get(localId)?.agent ?? 'unknown',
                status: 'failed',
                error,
              }
            }
            return childResult(child, localId)
          })
        const aborted = () => reject(signal.reason)
        const done = () => {
          signal.removeEventListener('abort', aborted)
          resolve(collect())
        }
        const wake = () => {
          if (--remaining === 0 && !signal.aborted) done()
        }
        let elsewhere = false
        for (const localId of localIds) {
          const child = childOf(localId)
          if (child && !child.settled) {
            remaining++
            child.onSettle.push(wake)
            if (child.mode === 'remote') elsewhere = true
          }
        }
        // In a segment, children run in other workers: this agent parks until they are done.
        if (elsewhere) run.park('children')
        if (signal.aborted) return reject(signal.reason)
        signal.addEventListener('abort', aborted)
        if (remaining === 0) done()
      })
      return settled.then(async (results) => {
        if (!workspaces || localIds.length < 2) return { results, conflicts: [] }
        const ids = localIds
          .map((localId) => byLocalId.get(localId)?.id)
          .filter((id): id is string => id !== undefined)
        const conflicts = await workspaces.conflicts(run.runId, ids)
        if (conflicts.length > 0) run.emitAgent(context, { type: 'workspace.conflicts', conflicts })
        return { results, conflicts }
      })
    },
  }

  /**
   * One model call of a thinking agent, its slot granted. A chain of two callbacks, not an async
   * function: an async function's frame, which lives as long as the call, held every local of the
   * step (about 450 bytes of each agent waiting on its model).
   */
  function callModel(
    entry: AgentEntry,
    model: ChatModel,
    slot: Slot,
    signal: AbortSignal,
  ): Promise<ThinkOutcome> {
    const { context } = entry
    const agentId = entry.id
    const turn = context.turn
    // Events are built only when someone listens: most runs have no listener, and a step is short.
    if (run.bus.hasListeners) run.emitAgent(context, { type: 'model.started', turn, model: model.name })
    const started = performance.now()
    const failed = (error: unknown): never => {
      run.busy.end()
      slot.release(0)
      cleanError(error)
      const durationMs = Math.round(performance.now() - started)
      const failure: Parameters<typeof run.emitAgent>[1] = {
        type: 'model.failed',
        turn,
        durationMs,
        error: toErrorInfo(error),
      }
      if (error instanceof ModelError && error.process) failure.process = error.process
      run.emitAgent(context, failure)
      throw error
    }
    run.busy.begin()
    let reply: Promise<ModelReply>
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
        tools: kindOf(entry).specs,
        onToken: (text) => run.emitAgent(context, { type: 'model.token', turn, text: clean(text) }),
        signal,
      }
      if (workspaces) request.workspace = () => workspaces.ensure(run.runId, agentId)
      reply = Promise.resolve(model.complete(request))
    } catch (error) {
      return promiseOf(() => failed(error))
    }
    return reply.then((answer) => {
      let cleaned: ModelReply
      try {
        cleaned = cleanReply(answer)
      } catch (error) {
        return failed(error)
      }
      run.busy.end()
      return thought(entry, context, turn, slot, started, cleaned)
    }, failed)
  }

  /** What the model said, as the step it makes: its actions parsed, its tokens booked. */
  function thought(
    entry: AgentEntry,
    context: AgentContext,
    turn: number,
    slot: Slot,
    started: number,
    reply: ModelReply,
  ): ThinkOutcome {
    const tokens = (reply.usage?.promptTokens ?? 0) + (reply.usage?.completionTokens ?? 0)
    // Books the tokens in the run's budget too.
    slot.release(tokens)
    const durationMs = performance.now() - started
    if (run.bus.hasListeners) {
      const completed: Parameters<typeof run.emitAgent>[1] = {
        type: 'model.completed',
        turn,
        durationMs: Math.round(durationMs),
      }
      if (reply.usage) completed.usage = reply.usage
      if (reply.cost !== undefined) completed.cost = reply.cost
      if (reply.process) completed.process = reply.process
      run.emitAgent(context, completed)
    }
    // Over a token budget after the call: the reply and its tokens are still the agent's (its
    // metrics count what was spent), and the step fails it.
    const exceeded = budgetExceeded(entry, context, tokens)

    // An oversized reply is refused by the parser; the history keeps only its beginning.
    const assistant: ChatMessage = { role: 'assistant', content: renderValue(reply.text ?? '', 200_000) }
    if (reply.toolCalls?.length) assistant.toolCalls = reply.toolCalls
    const parse = parseActions(reply, {
      tools: toolsOf(entry),
      subagents: entry.definition.subagents,
      childIds:
        context.children.length === 0 ? noChildren : new Set(context.children.map((child) => child.localId)),
    })
    if (parse.ok) {
      for (let index = 0; index < parse.actions.length; index++)
        parse.actions[index]!.key = `${turn}.${index}`
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

  async function launch(entry: AgentEntry, action: LaunchAction, signal: AbortSignal): Promise<ActOutcome> {
    const outcome = await run.launch(entry, action, signal)
    if (!outcome.ok) return { messages: [actionReply(action, outcome.reason)], refused: outcome.reason }
    const ids = outcome.children.map((child) => child.localId)
    return {
      messages: [actionReply(action, `launched: ${ids.join(', ')}`)],
      children: outcome.children,
    }
  }

  function cleanReply(reply: ModelReply): ModelReply {
    const cleaned: ModelReply = { ...reply }
    if (reply.text !== undefined) cleaned.text = clean(reply.text)
    if (reply.toolCalls)
      cleaned.toolCalls = reply.toolCalls.map((call) => ({ ...call, arguments: clean(call.arguments) }))
    return cleaned
  }

  function cleanError(error: unknown): void {
    if (error instanceof Error) error.message = clean(error.message)
  }

  /** The limit the agent or the run went over with its tokens, if either did. */
  function budgetExceeded(
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

  function sendMessage(entry: AgentEntry, context: AgentContext, to: string, text: string): string {
    const candidates =
      to === 'parent'
        ? [context.parentId]
        : [`${entry.id}.${to}`, context.parentId === null ? null : `${context.parentId}.${to}`, to]
    const recipient = candidates.map((id) => (id === null ? undefined : run.registry.get(id))).find(Boolean)
    if (!recipient) return `error: no agent "${to}" to send to; use "parent", a child id or a sibling id`
    if (recipient.settled) return `error: agent "${to}" has already finished`
    run.deliverMessage(recipient, entry.id, text)
    return `sent to ${recipient.id}`
  }

  /** What a tool is given. */
  function toolContext(
    context: AgentContext,
    action: ToolAction,
    callId: string,
    key: string,
    answer: AgentContext['answers'][string] | undefined,
    signal: AbortSignal,
  ): ToolContext {
    const fields: ToolContext = {
      runId: run.runId,
      agentId: context.agentId,
      callId,
      idempotencyKey: idempotencyKey(run.runId, context.agentId, key, action),
      signal,
      sleep: (ms) => abortableSleep(ms, signal),
      suspend: async (prompt) => {
        if (answer && 'payload' in answer) return answer.payload
        throw new SuspendRequest(prompt)
      },
    }
    if (workspaces) fields.workspace = () => workspaces.ensure(run.runId, context.agentId)
    return fields
  }

  /**
   * Runs a tool call. Plain callbacks, not an async function: a tool that returns at once (most
   * do) costs no frame and no turn of the microtask queue; one that takes time holds a callback.
   */
  function runTool(
    entry: AgentEntry,
    context: AgentContext,
    action: ToolAction,
    signal: AbortSignal,
  ): Promise<ActOutcome> {
    const tool = toolsOf(entry).get(action.tool)!
    const key = action.key ?? String(context.turn)
    const callId = action.callId ?? `${context.agentId}#${key}`
    const answer = context.answers[key]
    let needsApproval: boolean | undefined
    try {
      needsApproval =
        typeof tool.needsApproval === 'function' ? tool.needsApproval(action.args) : tool.needsApproval
    } catch (error) {
      return Promise.reject(error)
    }
    if (needsApproval && !(answer && 'approved' in answer)) {
      const prompt = `approve ${tool.name} ${renderValue(action.args, 500)}?`
      return Promise.resolve({
        messages: [],
        suspend: { kind: 'approval', callId, key, tool: tool.name, args: action.args, prompt },
      })
    }
    if (run.bus.hasListeners)
      run.emitAgent(context, { type: 'tool.started', callId, tool: tool.name, args: action.args })
    const started = performance.now()
    run.busy.begin()
    const completed = (value: unknown): ActOutcome => {
      let result: unknown
      try {
        result = clean(value)
      } catch (error) {
        return failed(error)
      }
      run.busy.end()
      const durationMs = performance.now() - started
      if (run.bus.hasListeners) {
        run.emitAgent(context, {
          type: 'tool.completed',
          callId,
          tool: tool.name,
          durationMs: Math.round(durationMs),
          result,
        })
      }
      return { messages: [actionReply(action, renderValue(result ?? null))], durationMs }
    }
    const failed = (error: unknown): ActOutcome => {
      run.busy.end()
      if (signal.aborted) throw error
      cleanError(error)
      const durationMs = performance.now() - started
      if (error instanceof SuspendRequest) {
        const awaiting = {
          kind: 'input' as const,
          callId,
          key,
          tool: tool.name,
          args: action.args,
          prompt: error.prompt,
        }
        return { messages: [], suspend: awaiting, durationMs }
      }
      run.emitAgent(context, {
        type: 'tool.failed',
        callId,
        tool: tool.name,
        durationMs: Math.round(durationMs),
        error: toErrorInfo(error),
      })
      // A tool error is information for the model, not the end of the agent.
      return { messages: [actionReply(action, `error: ${toErrorInfo(error).message}`)], durationMs }
    }
    let value: unknown
    try {
      value = tool.execute(action.args, toolContext(context, action, callId, key, answer, signal))
    } catch (error) {
      return promiseOf(() => failed(error))
    }
    if (isThenable(value)) return Promise.resolve(value).then(completed, failed)
    return promiseOf(() => completed(value))
  }
}

/**
 * The same for the same call only: same run, agent, action (turn and place in the reply), tool
 * and arguments. A tool that de-duplicates on it never returns an old result for a new request.
 */
export function idempotencyKey(runId: string, agentId: string, key: string, action: ToolAction): string {
  const digest = createHash('sha256')
    .update(`${action.tool}\n${JSON.stringify(action.args ?? null)}`)
    .digest('base64url')
    .slice(0, 16)
  return `${runId}:${agentId}:${key}:${digest}`
}
