import type { z } from 'zod'
import { describeValue, InvalidInputError, refuseUnknownOptions } from '../errors.js'
import type { ChatModel } from '../models/types.js'
import { assertStorable } from '../persistence/codec.js'
import { type AnyTool, isZodSchema } from '../tools/define-tool.js'
import { type AgentLimits, checkLimits } from './limits.js'

/**
 * An agent kind. `Result` is what its `finish` gives (typed by its `output` schema), `Name` its
 * name as written: a runtime given these definitions types `start('name', …).result` by them.
 */
export interface AgentDefinition<Result = unknown, Name extends string = string> {
  name: Name
  /** Role and goal, placed at the top of the system prompt. */
  instructions: string
  tools: readonly AnyTool[]
  /** Names of the agents this one may launch. */
  subagents: readonly string[]
  model?: ChatModel
  limits?: Partial<AgentLimits>
  /** Higher is served first when model calls queue up. */
  priority?: number
  /** What a parent receives if this agent times out. */
  fallback?: { value: unknown }
  /**
   * The shape of the agent's `finish` result. A result that does not fit is refused to the model
   * with the exact error, as tool arguments are; the one that fits is what the agent returns.
   */
  output?: z.ZodType<Result>
}

export interface AgentOptions {
  name: string
  instructions?: string
  tools?: readonly AnyTool[]
  /** Agents this one may launch, by definition or by name. */
  subagents?: readonly (AgentDefinition | string)[]
  model?: ChatModel
  limits?: Partial<AgentLimits>
  priority?: number
  /** What a parent receives if this agent times out (instead of the timeout error). */
  fallback?: unknown
  /** A zod schema for the agent's `finish` result: offered to its model, checked on every finish. */
  output?: z.ZodType
}

const agentNamePattern = /^[a-zA-Z][a-zA-Z0-9_-]{0,63}$/

/** What a `finish` of an agent with this `output` schema gives: its parsed value, or anything without one. */
export type ResultOfSchema<Schema> = Schema extends z.ZodType ? z.output<Schema> : unknown

export function defineAgent<const Name extends string, Schema extends z.ZodType | undefined = undefined>(
  options: AgentOptions & { name: Name; output?: Schema },
): AgentDefinition<ResultOfSchema<Schema>, Name>
export function defineAgent(options: AgentOptions): AgentDefinition {
  if (typeof options !== 'object' || options === null || Array.isArray(options))
    throw new InvalidInputError(
      `defineAgent: expected options such as { name: 'writer', instructions: '…' }, got ${describeValue(options)}`,
    )
  if (options.name === undefined)
    throw new InvalidInputError(
      'agent name is missing: give defineAgent a name, a letter then up to 63 letters, digits, "_" or "-"',
    )
  if (typeof options.name !== 'string' || !agentNamePattern.test(options.name)) {
    throw new InvalidInputError(
      `agent name "${options.name}" is invalid: expected a letter then up to 63 letters, digits, "_" or "-"`,
    )
  }
  checkOptionFields(options)
  const tools = options.tools ?? []
  if (!Array.isArray(tools))
    throw new InvalidInputError(`agent "${options.name}": tools must be a list of tools made by defineTool`)
  const seen = new Set<string>()
  for (const tool of tools) {
    // Another library's tool (JSON Schema parameters, no name) would fail mid-run, not here.
    if (
      typeof tool !== 'object' ||
      tool === null ||
      typeof tool.execute !== 'function' ||
      typeof tool.name !== 'string' ||
      !isZodSchema(tool.parameters)
    )
      throw new InvalidInputError(
        `agent "${options.name}": ${describeTool(tool)} in tools is no tool; expected one made by defineTool (a name, a zod schema of its parameters, execute)`,
      )
    if (seen.has(tool.name))
      throw new InvalidInputError(`agent "${options.name}" lists tool "${tool.name}" twice`)
    seen.add(tool.name)
  }
  const definition: AgentDefinition = {
    name: options.name,
    instructions: options.instructions ?? '',
    tools,
    subagents: subagentNames(options),
  }
  if (options.model !== undefined) definition.model = options.model
  if (options.limits !== undefined) definition.limits = options.limits
  if (options.priority !== undefined) {
    // A priority that is no number (NaN, 'high') would break the order of every queued call.
    if (typeof options.priority !== 'number' || !Number.isFinite(options.priority)) {
      throw new InvalidInputError(
        `agent "${options.name}": priority must be a finite number, got ${String(options.priority)}`,
      )
    }
    definition.priority = options.priority
  }
  if ('fallback' in options) definition.fallback = { value: options.fallback }
  if (options.output !== undefined) {
    if (!isZodSchema(options.output)) {
      throw new InvalidInputError(
        `agent "${options.name}": output must be a zod schema, such as z.object({ … })`,
      )
    }
    definition.output = options.output
  }
  return definition
}

const optionNames = new Set<string>([
  'name',
  'instructions',
  'tools',
  'subagents',
  'model',
  'limits',
  'priority',
  'fallback',
  'output',
] satisfies (keyof AgentOptions)[])

/**
 * The options a type check would have caught, for JavaScript and config files: an unknown name
 * (`instruction`), instructions that are no string, a model that is no ChatModel, limits out of
 * range, a fallback no store could keep. Each would otherwise be found mid-run, or never.
 */
function checkOptionFields(options: AgentOptions): void {
  const agent = `agent "${options.name}"`
  refuseUnknownOptions(agent, options, optionNames)
  if (options.instructions !== undefined && typeof options.instructions !== 'string')
    throw new InvalidInputError(
      `${agent}: instructions must be a string (its role and goal), got ${describeValue(options.instructions)}`,
    )
  const model: unknown = options.model
  if (model !== undefined && !isChatModel(model))
    throw new InvalidInputError(
      `${agent}: model must be a ChatModel, an object with a name and complete(request) (scriptedModel(…), openaiModel(…), commandModel(…)), got ${describeModel(model)}`,
    )
  if (options.limits !== undefined) checkLimits(options.limits, `of ${agent}`)
  const fallback: unknown = options.fallback
  // Kept in the agent's record: a function or symbol could not be stored, nor given to a parent.
  if (typeof fallback === 'function' || typeof fallback === 'symbol')
    throw new InvalidInputError(
      `${agent}: fallback must be a value its parent can receive (a string, number, object, …), got ${describeValue(fallback)}`,
    )
  assertStorable(fallback, `${agent}: the fallback`)
}

function isChatModel(value: unknown): value is ChatModel {
  if (typeof value !== 'object' || value === null) return false
  const model = value as Partial<Record<keyof ChatModel, unknown>>
  return typeof model.name === 'string' && typeof model.complete === 'function'
}

/** What a model option holds instead, its missing parts named: `an object without name or complete`. */
function describeModel(value: unknown): string {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return describeValue(value)
  const model = value as Record<string, unknown>
  const missing = [
    typeof model.name !== 'string' && 'a string name',
    typeof model.complete !== 'function' && 'a complete function',
  ].filter(Boolean)
  return `an object without ${missing.join(' or ')}`
}

/** A tool as an error names it: its name when it has one, else its JSON (functions left out). */
function describeTool(tool: unknown): string {
  const name = (tool as { name?: unknown } | null)?.name
  return typeof name === 'string' ? `"${name}"` : (JSON.stringify(tool) ?? String(tool))
}

function subagentNames(options: AgentOptions): string[] {
  const subagents = options.subagents ?? []
  const names = Array.isArray(subagents)
    ? subagents.map((agent) => (typeof agent === 'string' ? agent : agent?.name))
    : [undefined]
  const wrong = names.findIndex((name) => typeof name !== 'string')
  if (wrong !== -1)
    throw new InvalidInputError(`agent "${options.name}": subagents must be a list of agents or their names`)
  return names as string[]
}
