import { readFile } from 'node:fs/promises'
import path from 'node:path'
import { pathToFileURL } from 'node:url'
import {
  type AgentDefinition,
  type ChatModel,
  commandModel,
  defineAgent,
  InvalidInputError,
  type RunLimits,
  type RunStore,
  type SchedulerOptions,
  sleep,
  type WorkspaceOptions,
} from '@cohort/core'
import { z } from 'zod'
import { existingFile, existingFolder, runnableCommand } from './checked-paths.js'
import { storeFrom } from './home.js'

/** What `cohort run` and `cohort serve` load: the agents, their model, and how a run starts. */
export interface CohortConfig {
  agents: AgentDefinition[]
  /** Defaults to the endpoint of `OPENAI_API_KEY`/`OPENAI_BASE_URL`/`COHORT_MODEL`. */
  model?: ChatModel
  /** The agent a run starts with (default: the first). */
  root?: string
  /** The task when none is given on the command line. */
  task?: string
  /** Where runs are kept (default: `fileStore('.cohort/runs')`, or `--store`). */
  store?: RunStore
  limits?: Partial<RunLimits>
  scheduler?: SchedulerOptions
  workspaces?: WorkspaceOptions
  secrets?: string[]
}

/** Typed identity, for config modules: `export default defineConfig({ … })`. */
export function defineConfig(config: CohortConfig): CohortConfig {
  return config
}

const builtinTools = { sleep }

const jsonAgentSchema = z.strictObject({
  name: z.string(),
  instructions: z.string().default(''),
  subagents: z.array(z.string()).default([]),
  tools: z
    .array(
      z.enum(Object.keys(builtinTools) as ['sleep'], {
        error: (issue) =>
          `unknown tool ${JSON.stringify(issue.input)}; a JSON config has the builtin tools ${Object.keys(builtinTools).join(', ')} (others need a .js or .ts config)`,
      }),
    )
    .default([]),
  priority: z.number().optional(),
})

const jsonModelSchema = z.discriminatedUnion('provider', [
  z.strictObject({
    provider: z.literal('openai'),
    model: z.string(),
    baseURL: z.string().optional(),
    protocol: z.enum(['tools', 'text', 'auto']).optional(),
    stream: z.boolean().optional(),
  }),
  z.strictObject({
    provider: z.literal('command'),
    command: z.string(),
    args: z.array(z.string()).optional(),
    timeoutMs: z.number().int().positive().optional(),
  }),
])

const jsonConfigSchema = z.strictObject({
  agents: z.array(jsonAgentSchema).min(1),
  model: jsonModelSchema.optional(),
  root: z.string().optional(),
  task: z.string().optional(),
  limits: z.record(z.string(), z.number()).optional(),
  workspaces: z.strictObject({ root: z.string().optional(), base: z.string().optional() }).optional(),
  /** A folder (relative to the config) or a postgres:// URL. */
  store: z.string().min(1).optional(),
})

/** What a config is, as said of a folder given for one. */
export const configFileKinds = 'a config file (.js, .mjs, .ts or .json)'

/** Loads a config module (default export) or a JSON file, with an error that says what is wrong where. */
export async function loadConfig(file: string): Promise<CohortConfig> {
  // Checked first: an import of a missing file or a folder says so in the words of a module that failed to load.
  const absolute = await existingFile(file, `config ${file}`, configFileKinds)
  if (absolute.endsWith('.json')) return fromJson(absolute)
  let loaded: unknown
  try {
    loaded = await import(pathToFileURL(absolute).href)
  } catch (error) {
    const code = (error as { code?: string }).code
    const hint =
      code === 'ERR_UNKNOWN_FILE_EXTENSION'
        ? ' (a TypeScript config needs a loader: run the CLI with `node --import tsx`, or write the config in .js, .mjs or .json)'
        : ''
    throw new InvalidInputError(`cannot load config ${file}: ${(error as Error).message}${hint}`)
  }
  const config = (loaded as { default?: unknown }).default ?? (loaded as { config?: unknown }).config
  if (!config || typeof config !== 'object' || !Array.isArray((config as CohortConfig).agents)) {
    throw new InvalidInputError(
      `config ${file} must export default { agents: [...], model?, root?, task? } (see defineConfig)`,
    )
  }
  return config as CohortConfig
}

async function fromJson(file: string): Promise<CohortConfig> {
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (error) {
    throw new InvalidInputError(`cannot read config ${file}: ${(error as Error).message}`)
  }
  let raw: unknown
  try {
    raw = JSON.parse(text)
  } catch (error) {
    throw new InvalidInputError(
      `config ${file} is not valid JSON${jsonError(text, (error as Error).message)}`,
    )
  }
  const parsed = jsonConfigSchema.safeParse(raw)
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!
    throw new InvalidInputError(`config ${file}: ${issue.path.join('.') || '(top)'}: ${issue.message}`)
  }
  const json = parsed.data
  // Paths in the config are where it is, wherever the CLI is started from.
  const folder = path.dirname(file)
  const config: CohortConfig = {
    agents: json.agents.map((agent) =>
      defineAgent({
        name: agent.name,
        instructions: agent.instructions,
        subagents: agent.subagents,
        tools: agent.tools.map((name) => builtinTools[name]),
        ...(agent.priority !== undefined && { priority: agent.priority }),
      }),
    ),
  }
  try {
    if (json.model?.provider === 'openai') {
      const { provider: _, ...options } = json.model
      const { openaiModel } = await import('@cohort/openai')
      config.model = openaiModel(stripUndefined(options))
    } else if (json.model?.provider === 'command') {
      const { provider: _, ...options } = json.model
      const command = await runnableCommand(options.command, `config ${file}: model.command`, folder)
      config.model = commandModel(stripUndefined({ ...options, command }))
    }
  } catch (error) {
    if (error instanceof InvalidInputError) throw error
    // A model the config cannot make (no API key) is a mistake in the config, as a bad field is.
    throw new InvalidInputError(`config ${file}: model: ${(error as Error).message}`)
  }
  if (json.root) config.root = json.root
  if (json.task) config.task = json.task
  if (json.limits) config.limits = json.limits as Partial<RunLimits>
  if (json.workspaces) config.workspaces = await workspacesFrom(json.workspaces, file)
  if (json.store) config.store = await storeFrom(json.store, folder)
  return config
}

/**
 * What is wrong in a config's JSON and where: Node gives an offset (`at position 12`), or none, as
 * when the text ends early (then the end is where). Its quote of the whole text is left out.
 */
function jsonError(text: string, message: string): string {
  const what = message.replace(/ in JSON at position \d+.*$/s, '').replace(/, ".*" is not valid JSON$/s, '')
  const position = /at position (\d+)/.exec(message)?.[1]
  const ended = message.startsWith('Unexpected end of JSON input')
  if (position === undefined && !ended) return `: ${what}`
  const lines = text.slice(0, position === undefined ? text.length : Number(position)).split('\n')
  return ` at line ${lines.length}, column ${lines.at(-1)!.length + 1}: ${what}`
}

/** A JSON config's `workspaces`, its folders relative to the config; `base` must exist. */
async function workspacesFrom(
  workspaces: { root?: string | undefined; base?: string | undefined },
  file: string,
): Promise<WorkspaceOptions> {
  const folder = path.dirname(file)
  const options: WorkspaceOptions = {}
  if (workspaces.root !== undefined) options.root = path.resolve(folder, workspaces.root)
  if (workspaces.base !== undefined) {
    const base = path.resolve(folder, workspaces.base)
    options.base = await existingFolder(base, `config ${file}: workspaces.base ${base}`)
  }
  return options
}

function stripUndefined<T extends object>(value: T): { [K in keyof T]: Exclude<T[K], undefined> } {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as never
}
