import type { ChildResult } from '../agent/context.js'
import { ModelError } from '../errors.js'
import { tokensOfText } from '../scheduler/estimate-tokens.js'
import { isThenable } from '../thenable.js'
import { abortableSleep } from '../tools/define-tool.js'
import type { ChatModel, ModelReply, ModelRequest } from './types.js'

/** One scripted reply: text, an action object (or array of them), or a full `ModelReply`. */
export type ScriptedReply = string | Record<string, unknown> | Record<string, unknown>[] | ModelReply
export type ScriptedReplyFn = (request: ModelRequest) => ScriptedReply | Promise<ScriptedReply>

/**
 * Replies per agent name (a list read by turn, whose items may be functions, or one
 * function), or one function for every agent.
 */
export type Script =
  | ScriptedReplyFn
  | Record<string, readonly (ScriptedReply | ScriptedReplyFn)[] | ScriptedReplyFn>

export interface ScriptedModelOptions {
  /** Simulated latency of each call, in ms (a number, or a function of the request). */
  latencyMs?: number | ((request: ModelRequest) => number)
  name?: string
}

/**
 * A deterministic model for tests, demos and benchmarks. The reply depends only on the
 * request (agent and turn), never on hidden counters, so a run resumed in a new process
 * gets the replies an uninterrupted one would have got.
 */
export function scriptedModel(script: Script, options: ScriptedModelOptions = {}): ChatModel {
  const { latencyMs = 0, name = 'scripted' } = options
  return {
    name,
    // A callback after the latency, not an async function: its frame would live as long as the call.
    complete(request) {
      try {
        const latency = typeof latencyMs === 'function' ? latencyMs(request) : latencyMs
        if (latency > 0) return abortableSleep(latency, request.signal).then(() => answer(script, request))
        return Promise.resolve(answer(script, request))
      } catch (error) {
        return Promise.reject(error)
      }
    },
  }
}

/** The script's reply to `request`; waited for only when the script returned a promise. */
function answer(script: Script, request: ModelRequest): ModelReply | Promise<ModelReply> {
  const reply = pickReply(script, request)
  return isThenable<ScriptedReply>(reply) ? Promise.resolve(reply).then(toModelReply) : toModelReply(reply)
}

function pickReply(script: Script, request: ModelRequest): ScriptedReply | Promise<ScriptedReply> {
  if (typeof script === 'function') return script(request)
  const entry = script[request.agent.name]
  if (entry === undefined) {
    throw new ModelError(`scripted model has no script for agent "${request.agent.name}"`)
  }
  if (typeof entry === 'function') return entry(request)
  if (!Array.isArray(entry))
    throw new ModelError(
      `scripted model's script for agent "${request.agent.name}" is no list of replies nor a function`,
    )
  const reply = entry[request.turn]
  if (reply === undefined) {
    // Turns counted from 1, as the log counts them ("calls scripted (turn 2)").
    throw new ModelError(
      `scripted model has no reply for turn ${request.turn + 1} of agent "${request.agent.name}" (its script has ${entry.length} ${entry.length === 1 ? 'reply' : 'replies'})`,
    )
  }
  return typeof reply === 'function' ? reply(request) : reply
}

function toModelReply(reply: ScriptedReply): ModelReply {
  if (typeof reply === 'string') return { text: reply, usage: estimateUsage(reply) }
  if (!Array.isArray(reply) && ('text' in reply || 'toolCalls' in reply) && !('action' in reply)) {
    const modelReply = reply as ModelReply
    return modelReply.usage ? modelReply : { ...modelReply, usage: estimateUsage(JSON.stringify(modelReply)) }
  }
  const text = JSON.stringify(reply)
  return { text, usage: estimateUsage(text) }
}

function estimateUsage(text: string): { promptTokens: number; completionTokens: number } {
  return { promptTokens: 0, completionTokens: tokensOfText(text.length) }
}

const settledMark = 'Sub-agents settled ('

/**
 * The children's results a parent received since its last reply, after `wait_for_subagents`:
 * for scripted replies that aggregate them. Messages its children sent it may come after them.
 * Empty when none came.
 */
export function settledChildren(request: Pick<ModelRequest, 'messages'>): ChildResult[] {
  const { messages } = request
  const lastReply = messages.findLastIndex((message) => message.role === 'assistant')
  const settled = messages.slice(lastReply + 1).findLast((message) => message.content.includes(settledMark))
  const content = settled?.content ?? ''
  const start = content.indexOf(settledMark)
  if (start < 0) return []
  const json = content.slice(content.indexOf('[', start)).split('\nConflicts (')[0]!
  return JSON.parse(json) as ChildResult[]
}
