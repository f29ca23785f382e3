import { z } from 'zod'
import { maxTimeoutMs } from '../agent/limits.js'
import { InvalidInputError } from '../errors.js'

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null
const hasMethods =
  (...names: string[]) =>
  (value: unknown) =>
    isObject(value) && names.every((name) => typeof value[name] === 'function')

/**
 * The shape of `createRuntime`'s options, checked before anything is made: a typo (`limit`), a
 * string where a model or a store goes, or secrets given as one string (spread into characters,
 * redacting nothing) is refused with the field, not found out mid-run.
 */
const runtimeOptionsSchema = z.strictObject({
  // Each agent is checked where they are indexed (`indexAgents`).
  agents: z.array(z.unknown(), 'expected a list of agents made by defineAgent'),
  model: z
    .custom(hasMethods('complete'), 'expected a ChatModel: an object with complete(request)')
    .optional(),
  store: z
    .custom(
      hasMethods('saveRun', 'saveAgent', 'loadRun', 'listRuns'),
      'expected a RunStore (memoryStore(), fileStore(dir), postgresStore(url), …)',
    )
    .optional(),
  limits: z.custom(isObject, 'expected an object of limits').optional(),
  logger: z.custom(hasMethods('handle'), 'expected an EventSink such as createLogger()').optional(),
  scheduler: z.custom(isObject, 'expected an object of scheduler options').optional(),
  onCycle: z.enum(['refuse', 'sequential']).optional(),
  secrets: z.array(z.string(), 'expected a list of strings').optional(),
  storeTimeoutMs: z.number().positive().max(maxTimeoutMs).optional(),
  workspaces: z.custom(isObject, 'expected workspace options ({ root?, base? })').optional(),
  durability: z.enum(['sync', 'async']).optional(),
  inspect: z
    .custom((value) => typeof value === 'function' || hasMethods('next')(value), {
      // `createBrowserInspector()` itself is what users pass first; XState takes its `inspect`.
      error: ({ input }) =>
        `expected an XState inspector: a function of inspection events, or an observer${isObject(input) && isObject(input.inspect) ? ' (given an inspector of @statelyai/inspect: pass its .inspect, as createActor takes it)' : ''}`,
    })
    .optional(),
})

/** Refuses options of the wrong shape or an unknown name, naming the field and what it takes. */
export function checkRuntimeOptions(options: unknown): void {
  const checked = runtimeOptionsSchema.safeParse(options)
  if (checked.success) return
  const issue = checked.error.issues[0]!
  const field = issue.path.join('.') || '(the options)'
  const known =
    issue.code === 'unrecognized_keys'
      ? `; options are ${runtimeOptionsSchema.keyof().options.join(', ')}`
      : ''
  throw new InvalidInputError(`createRuntime: ${field}: ${issue.message}${known}`)
}
