import { z } from 'zod'
import { describeValue, InvalidInputError, refuseUnknownOptions } from '../errors.js'
import type { ToolSpec } from '../models/types.js'
import { isActionName } from '../protocol/actions.js'

/** What a tool's `execute` receives besides its validated arguments. */
export interface ToolContext {
  runId: string
  agentId: string
  callId: string
  /** Stable across retries and restores of the same call: use it to make side effects idempotent. */
  idempotencyKey: string
  signal: AbortSignal
  /** Waits `ms` milliseconds, or rejects when the call is aborted (cancel, timeout). */
  sleep(ms: number): Promise<void>
  /**
   * Suspends the agent until `run.resume(agentId, payload)`, then returns `payload`. The tool
   * runs again from the start on resume (also after a restore), and this call then returns
   * the payload at once: code before it must be safe to repeat.
   */
  suspend(prompt: string): Promise<unknown>
  /** The agent's own workspace directory, created on first call (when the runtime has workspaces). */
  workspace?: () => Promise<string>
}

/** Thrown by `ctx.suspend` to unwind the tool; the runtime turns it into a suspension. */
export class SuspendRequest extends Error {
  constructor(readonly prompt: string) {
    super(`suspended: ${prompt}`)
  }
}

export interface Tool<Args = unknown, Result = unknown> {
  name: string
  description: string
  parameters: z.ZodType<Args>
  execute(args: Args, ctx: ToolContext): Promise<Result> | Result
  /** Ask a person before each call (or for the calls this function picks). */
  needsApproval?: boolean | ((args: Args) => boolean)
  /** JSON schema of `parameters`, computed once. */
  readonly jsonSchema: Record<string, unknown>
}

/** A tool of any argument and result types, as agents and registries hold them. */
// biome-ignore lint/suspicious/noExplicitAny: arguments are checked by each tool's own schema at run time
export type AnyTool = Tool<any, any>

export interface ToolDefinition<Args, Result> {
  name: string
  description: string
  parameters: z.ZodType<Args>
  execute(args: Args, ctx: ToolContext): Promise<Result> | Result
  needsApproval?: boolean | ((args: Args) => boolean)
}

const toolOptionNames = new Set<string>([
  'name',
  'description',
  'parameters',
  'execute',
  'needsApproval',
] satisfies (keyof ToolDefinition<unknown, unknown>)[])

const toolNamePattern = /^[a-zA-Z][a-zA-Z0-9_-]{0,63}$/

export function defineTool<Args, Result>(definition: ToolDefinition<Args, Result>): Tool<Args, Result> {
  if (typeof definition !== 'object' || definition === null)
    throw new InvalidInputError(
      `defineTool: expected a definition { name, description, parameters, execute }, got ${describeValue(definition)}`,
    )
  if (definition.name === undefined)
    throw new InvalidInputError(
      'tool name is missing: give defineTool a name, a letter then up to 63 letters, digits, "_" or "-"',
    )
  if (typeof definition.name !== 'string' || !toolNamePattern.test(definition.name)) {
    throw new InvalidInputError(
      `tool name "${definition.name}" is invalid: expected a letter then up to 63 letters, digits, "_" or "-"`,
    )
  }
  if (isActionName(definition.name)) {
    throw new InvalidInputError(`tool name "${definition.name}" is reserved for the action protocol`)
  }
  // The model reads the description to know when to call the tool.
  if (typeof definition.description !== 'string' || definition.description.trim() === '')
    throw new InvalidInputError(
      `tool "${definition.name}": description must be a non-empty string saying what the tool does (the model reads it), got ${describeValue(definition.description)}`,
    )
  if (typeof definition.execute !== 'function')
    throw new InvalidInputError(`tool "${definition.name}": execute must be a function (args, ctx) => result`)
  // A misspelt option (`approval: true`) would leave a tool meant to wait for a person running freely.
  // A tool spread into a new one (`{ ...search, needsApproval: true }`) carries the jsonSchema
  // defineTool made it: made again below, from the parameters.
  const { jsonSchema: _made, ...given } = definition as ToolDefinition<Args, Result> & {
    jsonSchema?: unknown
  }
  refuseUnknownOptions(`tool "${definition.name}"`, given, toolOptionNames)
  const { needsApproval } = definition as { needsApproval?: unknown }
  if (
    needsApproval !== undefined &&
    typeof needsApproval !== 'boolean' &&
    typeof needsApproval !== 'function'
  )
    throw new InvalidInputError(
      `tool "${definition.name}": needsApproval must be true, false or a function (args) => boolean, got ${describeValue(needsApproval)}`,
    )
  if (!isZodSchema(definition.parameters))
    throw new InvalidInputError(
      `tool "${definition.name}": parameters must be a zod schema, such as z.object({ … })`,
    )
  const jsonSchema = jsonSchemaOf(definition.parameters)
  // Models give a tool's arguments as one JSON object: OpenAI refuses a function whose schema is not one.
  if (jsonSchema.type !== 'object')
    throw new InvalidInputError(
      `tool "${definition.name}": parameters must be an object schema, such as z.object({ … }); got one of type ${JSON.stringify(jsonSchema.type ?? Object.keys(jsonSchema)[0] ?? 'any')}`,
    )
  return { ...definition, jsonSchema }
}

export function isZodSchema(value: unknown): value is z.ZodType {
  return typeof value === 'object' && value !== null && typeof (value as z.ZodType).safeParse === 'function'
}

/**
 * The JSON Schema a model is offered for a zod schema (what JSON cannot say is left open). By
 * default that of the input the model writes and the schema parses: a `.default()` field is not
 * required, a `.transform()` is described by what it takes. `output`: what parsing gives back.
 */
export function jsonSchemaOf(schema: z.ZodType, io: 'input' | 'output' = 'input'): Record<string, unknown> {
  const jsonSchema = z.toJSONSchema(schema, { unrepresentable: 'any', io }) as Record<string, unknown>
  delete jsonSchema.$schema
  return jsonSchema
}

export function toolSpec(tool: AnyTool): ToolSpec {
  return { name: tool.name, description: tool.description, parameters: tool.jsonSchema }
}

/** Waits `ms`, or rejects with the signal's reason when it aborts first. */
export function abortableSleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason)
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort)
      resolve()
    }, ms)
    const onAbort = () => {
      clearTimeout(timer)
      reject(signal.reason)
    }
    // Not `{ once: true }`: parsing options costs, and an aborted signal never fires again.
    signal.addEventListener('abort', onAbort)
  })
}
