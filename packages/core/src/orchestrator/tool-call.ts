import { createHash } from 'node:crypto'
import type { ActOutcome } from '../agent/agent-loop.js'
import { type AgentContext, actionKey } from '../agent/context.js'
import { toErrorInfo } from '../errors.js'
import type { ActionOf } from '../protocol/actions.js'
import { actionReply } from '../protocol/feedback.js'
import { checkToolArgs } from '../protocol/parse-actions.js'
import { redactError } from '../protocol/redact.js'
import { renderValue } from '../protocol/render-value.js'
import { isThenable, promiseOf } from '../thenable.js'
import { type AnyTool, abortableSleep, SuspendRequest, type ToolContext } from '../tools/define-tool.js'
import type { AgentEntry } from './agent-entry.js'
import type { EffectHost } from './effect-host.js'

type ToolAction = ActionOf<'call_tool'>

/**
 * The effect of a `call_tool` action: asks for approval when the tool needs it, else runs the
 * tool. Plain callbacks, not an async function: a tool that returns at once (most do) costs no
 * frame and no turn of the microtask queue; one that takes time holds a callback.
 */
export function runTool(
  run: EffectHost,
  entry: AgentEntry,
  given: ToolAction,
  signal: AbortSignal,
): Promise<ActOutcome> {
  const { context } = entry
  const tool = run.kinds.of(entry.definition).tools.get(given.tool)!
  // The call's arguments are the model's: parsed here, each time before the tool runs, under its
  // current parameters (a run resumed after a deploy may have a changed tool).
  const action = parsed(tool, given)
  if (typeof action === 'string')
    return Promise.resolve({ messages: [actionReply(given, `error: ${action}`)], refused: action })
  const key = actionKey(context, action)
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
    run.emitUnlessStopped(signal, context, {
      type: 'tool.started',
      callId,
      tool: tool.name,
      args: action.args,
    })
  const started = performance.now()
  entry.busySince = started
  run.busy.begin()
  const completed = (value: unknown): ActOutcome => {
    let result: unknown
    try {
      result = run.redact(value)
    } catch (error) {
      return failed(error)
    }
    run.busy.end()
    const durationMs = performance.now() - started
    if (run.bus.hasListeners) {
      run.emitUnlessStopped(signal, context, {
        type: 'tool.completed',
        callId,
        tool: tool.name,
        durationMs: Math.round(durationMs),
        result,
      })
    }
    return { messages: [actionReply(action, renderValue(result ?? null))], durationMs }
  }
  const failed = (thrown: unknown): ActOutcome => {
    run.busy.end()
    if (signal.aborted) throw thrown
    const error = redactError(run.redact, thrown)
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
    run.emitUnlessStopped(signal, context, {
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
  let thenable: boolean
  try {
    value = tool.execute(action.args, toolContext(run, context, action, callId, key, answer, signal))
    // Inside the try: a result whose `then` getter throws is the tool's failure.
    thenable = isThenable(value)
  } catch (error) {
    return promiseOf(() => failed(error))
  }
  if (thenable) return Promise.resolve(value).then(completed, failed)
  return promiseOf(() => completed(value))
}

/**
 * A stored call as it runs: its arguments (the model's) parsed by the tool as this process has
 * it, or the error the model is told, as for an invalid call in a reply (they fitted when the
 * reply was parsed: the tool changed since). The digest, and so the idempotency key, stays the
 * one of the arguments as given.
 */
function parsed(tool: AnyTool, action: ToolAction): ToolAction | string {
  const checked = checkToolArgs(tool, action.args)
  if (!checked.ok)
    return `${checked.error} (checked again before it ran, against the tool's current parameters)`
  return { ...action, args: checked.args, digest: action.digest ?? callDigest(action) }
}

/** What a tool is given. */
function toolContext(
  run: EffectHost,
  context: AgentContext,
  action: ToolAction,
  callId: string,
  key: string,
  answer: AgentContext['answers'][string] | undefined,
  signal: AbortSignal,
): ToolContext {
  const { workspaces } = run
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
 * The same for the same call only: same run, agent, action (turn and place in the reply), tool
 * and arguments. A tool that de-duplicates on it never returns an old result for a new request.
 */
export function idempotencyKey(runId: string, agentId: string, key: string, action: ToolAction): string {
  return `${runId}:${agentId}:${key}:${action.digest ?? callDigest(action)}`
}

/** The tool and its arguments, digested (an action stored before actions kept their digest has it made here). */
export function callDigest(action: ToolAction): string {
  return createHash('sha256')
    .update(`${action.tool}\n${JSON.stringify(action.args ?? null)}`)
    .digest('base64url')
    .slice(0, 16)
}
