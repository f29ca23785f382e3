import { z } from 'zod'
import { maxTimeoutMs } from '../agent/limits.js'

/** Ids a child may have: they appear in prompts, logs, file names and URLs. */
export const childIdPattern = /^[a-zA-Z0-9_-]{1,48}$/

// One schema per shape: the types below, the JSON Schemas offered to models (`prompt.ts`) and
// the validation of replies (`parse-actions.ts`) all come from these. Their messages are what
// the model is told when its reply does not fit.

// Its own message: zod's "Too small: expected number to be >=0" names neither the field nor what a
// position is. (A fraction fails the type, and is told the union's message.)
const dependsOnPosition = z
  .number()
  .int()
  .min(0, {
    error: (issue) =>
      `"depends_on" ${JSON.stringify(issue.input)} is no position: a position is the index of an agent in this launch, a whole number from 0 (the first agent)`,
  })

/** One sub-agent to start, as the model asks for it. */
export const launchSpecSchema = z.object({
  agent: z.string({ error: '"agent" must be the name of an agent this agent can launch' }),
  task: z
    .string({ error: '"task" must be a non-empty string' })
    .refine((task) => task.trim() !== '', '"task" must be a non-empty string'),
  id: z
    .string({ error: '"id" must be 1-48 letters, digits, "_" or "-"' })
    .regex(childIdPattern, '"id" must be 1-48 letters, digits, "_" or "-"')
    .describe('Your name for this sub-agent')
    .optional(),
  depends_on: z
    .array(
      z.union([z.string(), dependsOnPosition], {
        error:
          '"depends_on" entries must be sibling ids, or positions in this launch (0 for the first agent)',
      }),
      { error: '"depends_on" must be an array of sibling ids (or positions in this launch, from 0)' },
    )
    .describe('Sibling ids to wait for, or positions in this launch (0 for the first agent)')
    .optional(),
  priority: z
    .number({ error: '"priority" must be a number' })
    .describe('Higher is served first when model calls queue up')
    .optional(),
  timeout_ms: z
    .number({ error: '"timeout_ms" must be a positive number' })
    .positive('"timeout_ms" must be a positive number')
    .max(maxTimeoutMs, `"timeout_ms" must be at most ${maxTimeoutMs} (about 24.8 days)`)
    .describe('Wall-clock limit for this sub-agent, in ms')
    .optional(),
  fallback: z.unknown().describe('What you receive if this sub-agent times out').optional(),
})
export type LaunchSpec = z.infer<typeof launchSpecSchema>

export const launchArgsSchema = z.object({
  agents: z
    .array(z.unknown(), {
      error: 'launch_subagents needs "agents": a non-empty array of {"agent", "task", "id"?}',
    })
    .min(1, 'launch_subagents needs "agents": a non-empty array of {"agent", "task", "id"?}'),
  on_cycle: z
    .enum(['refuse', 'sequential'], { error: '"on_cycle" must be "refuse" or "sequential"' })
    .optional(),
})

export const waitArgsSchema = z.object({
  ids: z
    .array(z.string(), { error: 'wait_for_subagents: "ids" must be an array of sub-agent ids' })
    .nullish(),
})

export const sendMessageArgsSchema = z.object({
  to: z
    .string({ error: 'send_message needs "to": "parent", a child id or a sibling id' })
    .min(1, 'send_message needs "to": "parent", a child id or a sibling id'),
  text: z
    .string({ error: 'send_message needs "text": a non-empty string' })
    .refine((text) => text.trim() !== '', 'send_message needs "text": a non-empty string'),
})

export const finishArgsSchema = z.object({ result: z.unknown().describe('Any JSON value') })

/** What an agent does next, parsed from its model's reply. `callId` is the native tool call it came from. */
export type Action = (
  | { action: 'launch_subagents'; agents: LaunchSpec[]; on_cycle?: 'refuse' | 'sequential' }
  | { action: 'wait_for_subagents'; ids?: string[] }
  | {
      action: 'call_tool'
      tool: string
      /**
       * The arguments as the model gave them (JSON), checked when the reply was parsed; `execute`
       * gets what they parse to under the tool's `parameters` right before it runs.
       */
      args: unknown
      /**
       * Digest of the tool and its arguments as the model gave them, made when the reply is
       * parsed and stored with it: the idempotency key's last part, the same after a store that
       * keeps object keys in its own order (PostgreSQL's jsonb).
       */
      digest?: string
    }
  | { action: 'finish'; result: unknown }
  | ({ action: 'send_message' } & z.infer<typeof sendMessageArgsSchema>)
) & {
  /** The native tool call this action came from; its answer is a `tool` message. */
  callId?: string
  /** `turn.index`: where the action stands in the agent's history; tools' idempotency keys use it. */
  key?: string
}

export type ActionName = Action['action']

/** Every action's name, in the order prompts list them. */
export const actionNames = [
  'launch_subagents',
  'wait_for_subagents',
  'call_tool',
  'finish',
  'send_message',
] as const satisfies readonly ActionName[]

export function isActionName(value: unknown): value is ActionName {
  return (actionNames as readonly unknown[]).includes(value)
}

/** One kind of action: `ActionOf<'call_tool'>`. */
export type ActionOf<Name extends ActionName> = Extract<Action, { action: Name }>

/** A parser result is data, never an exception for bad model output. */
export type ParseResult = { ok: true; actions: Action[] } | { ok: false; error: string }

/** What a model is told of a reply that does not fit a schema: its first issue. */
export function issueOf(error: z.ZodError): string {
  return error.issues[0]?.message ?? 'invalid'
}
