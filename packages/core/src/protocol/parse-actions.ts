import type { z } from 'zod'
import { describeValue } from '../errors.js'
import type { ModelReply, ToolCall } from '../models/types.js'
import type { AnyTool } from '../tools/define-tool.js'
import {
  type Action,
  actionNames,
  isActionName,
  issueOf,
  type LaunchSpec,
  launchArgsSchema,
  launchSpecSchema,
  type ParseResult,
  sendMessageArgsSchema,
  waitArgsSchema,
} from './actions.js'
import { extractJsonValues, jsonDepth, parseWhole, unparsedJson } from './extract-json.js'

export interface ParseContext {
  tools: ReadonlyMap<string, AnyTool>
  /** Agent names this agent may launch. */
  subagents: readonly string[]
  /** Ids of the children this agent has launched so far. */
  childIds: ReadonlySet<string>
  /** The shape its `finish` result must have (`defineAgent({ output })`). */
  output?: z.ZodType | undefined
}

/** The longest reply the parser reads; a longer one is refused (and a command stopped past it). */
export const maxReplyChars = 200_000
const maxJsonDepth = 64
const maxActionsPerReply = 100
const example = '{"action": "finish", "result": "..."}'

/** Turns a model reply into actions, or into one exact error the model can act on. */
export function parseActions(reply: ModelReply, context: ParseContext): ParseResult {
  const raw = reply.toolCalls?.length ? fromToolCalls(reply.toolCalls) : fromText(reply.text ?? '')
  if (!raw.ok) return raw
  if (raw.items.length === 0) return fail(`the reply holds no action; expected an action such as ${example}`)
  if (raw.items.length > maxActionsPerReply) {
    return fail(`the reply holds ${raw.items.length} actions; at most ${maxActionsPerReply} are allowed`)
  }
  // The ids a wait may name: the agent's children, and those of the reply's launches before it
  // (a copy, made by a launch: most replies launch nothing, and a Set a step was garbage).
  let launched = context.childIds
  const actions: Action[] = []
  for (let index = 0; index < raw.items.length; index++) {
    const item = raw.items[index]!
    const where = raw.items.length > 1 ? `action ${index + 1}: ` : ''
    const parsed = toAction(item.value, context, launched)
    if (typeof parsed === 'string') return fail(where + parsed)
    if (item.callId !== undefined) parsed.callId = item.callId
    if (parsed.action === 'launch_subagents') launched = withLaunched(launched, parsed.agents)
    actions.push(parsed)
  }
  // A finish ends the agent: what came after it would be dropped without a word.
  const finish = actions.findIndex((action) => action.action === 'finish')
  if (finish >= 0 && finish < actions.length - 1) {
    const after = actions.length - 1 - finish
    return fail(
      `action ${finish + 1}: finish must be the last action of a reply: the ${after === 1 ? 'action' : `${after} actions`} after it would never run; put them before it, or leave them out`,
    )
  }
  return { ok: true, actions }
}

type RawItem = { value: unknown; callId?: string }
type RawResult = { ok: true; items: RawItem[] } | { ok: false; error: string }

function fail(error: string): { ok: false; error: string } {
  return { ok: false, error }
}

function fromText(text: string): RawResult {
  if (text.length > maxReplyChars) {
    return fail(`the reply is ${text.length} characters long; at most ${maxReplyChars} are accepted`)
  }
  const answer = withoutThinking(text)
  const found = extractJsonValues(answer)
  if (found.length === 0) {
    const thought = answer.length < text.length ? ' outside its <think> block' : ''
    const unparsed = unparsedJson(answer)
    if (unparsed === undefined)
      return fail(`the reply holds no JSON action${thought}; expected JSON such as ${example}`)
    return fail(
      `the reply holds no JSON action that parses${thought}: ${truncate(unparsed.json, 80)} ${unparsed.problem}; write strict JSON (double-quoted keys and strings, no comments), such as ${example}`,
    )
  }
  const items: RawItem[] = []
  for (const value of found) {
    if (jsonDepth(value, maxJsonDepth) > maxJsonDepth) {
      return fail(`the JSON is nested deeper than ${maxJsonDepth} levels`)
    }
    // Objects one after another run in order, as the items of an array do.
    if (Array.isArray(value)) for (const item of value) items.push({ value: item })
    else items.push({ value })
  }
  return { ok: true, items }
}

/**
 * The reply without the reasoning a model left at the start of its content (`<think>…</think>`,
 * as DeepSeek-R1, QwQ and Qwen3 write): a draft action in it is not meant to run. A closing tag
 * without its opening (a chat template that sends the opening itself) ends the thinking too; a
 * thinking never closed (a reply cut off) holds no action. Tags elsewhere (in a result) are text.
 */
function withoutThinking(text: string): string {
  const opens = text.trimStart().startsWith('<think>')
  if (!opens && (text.includes('<think>') || !text.includes('</think>'))) return text
  const close = text.indexOf('</think>')
  return close < 0 ? '' : text.slice(close + '</think>'.length)
}

function fromToolCalls(calls: readonly ToolCall[]): RawResult {
  const items: RawItem[] = []
  const chars = toolCallChars(calls)
  if (chars > maxReplyChars) {
    return fail(
      `the reply's tool calls hold ${chars} characters of arguments; at most ${maxReplyChars} are accepted`,
    )
  }
  for (const call of calls) {
    let args: unknown = call.arguments
    if (typeof args === 'string') {
      // Its form forgiven as a reply's text is (a fence, a trailing comma), never its content.
      const found = args.trim() === '' ? { found: true as const, value: {} } : parseWhole(args)
      const value = found.found ? found.value : jsonValueOf(args)
      if (value === undefined) {
        return fail(
          `the arguments of tool call ${call.name} are not valid JSON: ${truncate(call.arguments as string, 200)}`,
        )
      }
      if (!isObject(value)) return fail(notAnObject(call.name, value))
      args = value
    }
    if (jsonDepth(args, maxJsonDepth) > maxJsonDepth) {
      return fail(`the arguments of ${call.name} are nested deeper than ${maxJsonDepth} levels`)
    }
    const value = isActionName(call.name)
      ? { ...(isObject(args) ? args : {}), action: call.name }
      : { action: 'call_tool', tool: call.name, args }
    items.push({ value, callId: call.id })
  }
  return { ok: true, items }
}

/** The JSON value `text` is (`null`, `"…"`, `3`, …), or undefined when it is not JSON. */
function jsonValueOf(text: string): unknown {
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}

function notAnObject(name: string, value: unknown): string {
  const twice = typeof value === 'string' && isObject(jsonValueOf(value))
  const what = twice
    ? 'a JSON string holding an object (encoded twice)'
    : Array.isArray(value)
      ? 'a JSON array'
      : describeValue(value)
  return `the arguments of tool call ${name} are ${what}, not a JSON object; send the arguments as one object, such as {"name": value}`
}

function withLaunched(ids: ReadonlySet<string>, specs: readonly LaunchSpec[]): ReadonlySet<string> {
  const next = new Set(ids)
  for (const spec of specs) if (spec.id !== undefined) next.add(spec.id)
  return next
}

function toAction(value: unknown, context: ParseContext, launched: ReadonlySet<string>): Action | string {
  if (!isObject(value)) return `expected a JSON object with an "action" field, got ${describeValue(value)}`
  const name = value.action
  switch (name) {
    case 'launch_subagents':
      return toLaunch(value, context, launched)
    case 'wait_for_subagents':
      return toWait(value, launched)
    case 'call_tool':
      return toToolCall(value, context)
    case 'finish':
      if (!('result' in value)) return 'finish needs a "result" field (any JSON value)'
      return toFinish(value.result, context.output)
    case 'send_message': {
      const checked = sendMessageArgsSchema.safeParse(value)
      if (!checked.success) return issueOf(checked.error)
      return { action: 'send_message', ...checked.data }
    }
    default:
      return typeof name === 'string'
        ? unknownAction(name, context)
        : `missing "action" field; expected one of ${actionNames.join(', ')}`
  }
}

/** An action the protocol does not have, with the correction a model most likely needs. */
function unknownAction(name: string, context: ParseContext): string {
  const shown = `unknown action "${truncate(name, 60)}"`
  if (context.tools.has(name))
    return `${shown}: ${name} is a tool; call it as {"action": "call_tool", "tool": "${name}", "args": {…}}`
  const meant = actionNames.find((action) => action === name.trim().toLowerCase())
  const hint = meant === undefined ? '; expected' : `: did you mean "${meant}"? Expected`
  return `${shown}${hint} one of ${actionNames.join(', ')}`
}

function toLaunch(
  value: Record<string, unknown>,
  context: ParseContext,
  launched: ReadonlySet<string>,
): Action | string {
  const args = launchArgsSchema.safeParse(value)
  if (!args.success) return issueOf(args.error)
  if (context.subagents.length === 0) return 'this agent cannot launch sub-agents'
  const specs: LaunchSpec[] = []
  const inThisLaunch = new Set<string>()
  for (const [index, entry] of args.data.agents.entries()) {
    const at = `agents[${index}]`
    if (!isObject(entry))
      return `${at} must be an object {"agent", "task", "id"?}, got ${describeValue(entry)}`
    const { agent } = entry
    if (typeof agent !== 'string' || !context.subagents.includes(agent)) {
      return `${at}: unknown agent ${JSON.stringify(truncate(String(agent), 60))}; this agent can launch: ${context.subagents.join(', ')}`
    }
    const checked = launchSpecSchema.safeParse(entry)
    if (!checked.success) return `${at}: ${issueOf(checked.error)}`
    const spec = checked.data
    // A position names another agent of this launch, as the launch's list gives them.
    const position = spec.depends_on?.find(
      (dep) => typeof dep === 'number' && (dep >= args.data.agents.length || dep === index),
    )
    if (position !== undefined) {
      return `${at}: depends_on ${position} ${position === index ? 'is this agent itself' : `is no position in this launch of ${args.data.agents.length}`}; expected the position of another agent of it, from 0`
    }
    if (spec.id !== undefined) {
      if (launched.has(spec.id) || inThisLaunch.has(spec.id))
        return `${at}: id "${spec.id}" is already used by another sub-agent`
      inThisLaunch.add(spec.id)
    }
    specs.push(spec)
  }
  const onCycle = args.data.on_cycle
  return onCycle === undefined
    ? { action: 'launch_subagents', agents: specs }
    : { action: 'launch_subagents', agents: specs, on_cycle: onCycle }
}

function toWait(value: Record<string, unknown>, launched: ReadonlySet<string>): Action | string {
  const checked = waitArgsSchema.safeParse(value)
  if (!checked.success) return issueOf(checked.error)
  const ids = checked.data.ids
  if (ids === undefined || ids === null) return { action: 'wait_for_subagents' }
  for (const id of ids) {
    if (!launched.has(id)) {
      const known = [...launched].slice(0, 20).join(', ') || 'none'
      return `wait_for_subagents: unknown id "${truncate(id, 60)}"; launched ids: ${known}`
    }
  }
  return ids.length === 0 ? { action: 'wait_for_subagents' } : { action: 'wait_for_subagents', ids }
}

function toToolCall(value: Record<string, unknown>, context: ParseContext): Action | string {
  const name = value.tool
  const available = [...context.tools.keys()].join(', ') || 'none'
  if (typeof name !== 'string') {
    const got = name === undefined ? '' : `, got ${describeValue(name)}`
    return `call_tool needs "tool": the name of one of this agent's tools (${available})${got}`
  }
  const tool = context.tools.get(name)
  if (!tool) return `unknown tool ${JSON.stringify(truncate(name, 60))}; available tools: ${available}`
  // Checked now, so that the model is told at once; kept as the model gave them (JSON, as a store
  // keeps them), and parsed again right before the tool runs: parsing zod's output again is not
  // parsing the input (a transform, a coercion), and the tool may have changed by then.
  const args = value.args ?? {}
  const checked = checkToolArgs(tool, args)
  if (!checked.ok) return checked.error
  return { action: 'call_tool', tool: tool.name, args }
}

/**
 * A tool call's arguments as the model gave them, checked against the tool's `parameters`: what
 * `execute` is given (zod's output, defaults filled in), or the error the model is shown. Run on
 * a reply's calls when it is parsed, and on each call again right before the tool runs.
 */
export function checkToolArgs(
  tool: AnyTool,
  args: unknown,
): { ok: true; args: unknown } | { ok: false; error: string } {
  const checked = (tool.parameters as z.ZodType).safeParse(args ?? {})
  if (checked.success) return { ok: true, args: checked.data }
  return { ok: false, error: `invalid arguments for tool "${tool.name}": ${issuesAt('args', checked.error)}` }
}

/** A finish, its result checked against the agent's output schema when it has one. */
function toFinish(result: unknown, output: z.ZodType | undefined): Action | string {
  if (!output) return { action: 'finish', result }
  const checked = output.safeParse(result)
  if (checked.success) return { action: 'finish', result: checked.data }
  // A result written as JSON inside a string meant that JSON: its form is forgiven, not its content.
  if (typeof result === 'string') {
    const inner = parseWhole(result)
    const again = inner.found ? output.safeParse(inner.value) : undefined
    if (again?.success) return { action: 'finish', result: again.data }
  }
  return `the finish result does not match this agent's output schema: ${issuesAt('result', checked.error)}`
}

/** A schema's first issues, each at its path under `root` (`args.city: …`). */
function issuesAt(root: string, error: z.ZodError): string {
  return error.issues
    .slice(0, 5)
    .map((issue) => `${[root, ...issue.path.map(String)].join('.')}: ${issue.message}`)
    .join('; ')
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function truncate(text: string, length: number): string {
  return text.length > length ? `${text.slice(0, length)}…` : text
}

/** Characters of the arguments given as text (a wire format's); arguments given as objects come from code, not a wire. */
function toolCallChars(calls: readonly ToolCall[]): number {
  let chars = 0
  for (const call of calls) if (typeof call.arguments === 'string') chars += call.arguments.length
  return chars
}

/**
 * A reply's tool calls as the history keeps them: a reply refused for its size keeps the
 * beginning of each call's arguments, so the agent's record stays small and the model still sees
 * which calls it made.
 */
export function toolCallsForHistory(calls: readonly ToolCall[]): ToolCall[] {
  if (toolCallChars(calls) <= maxReplyChars) return calls as ToolCall[]
  const kept = Math.floor(maxReplyChars / calls.length)
  return calls.map((call) =>
    typeof call.arguments === 'string' && call.arguments.length > kept
      ? {
          ...call,
          arguments: `${call.arguments.slice(0, kept)}… (${call.arguments.length - kept} more characters)`,
        }
      : call,
  )
}
