// What the HTTP API answers, as zod schemas: the handlers are type-checked against them, the OpenAPI
// description is generated from them, and the inspector's script takes its types from them.
// This module imports nothing of the server, so the browser's type check can read it.
import { z } from '@hono/zod-openapi'

export const errorShape = z
  .object({ error: z.string().openapi({ example: 'invalid body: task: task must be a non-empty string' }) })
  .openapi('Error', { description: 'What was wrong, and what was expected.' })

const errorInfo = z.object({ name: z.string(), code: z.string(), message: z.string() })
const runStatus = z.enum(['running', 'completed', 'failed', 'cancelled'])

export const runRecordShape = z
  .object({
    version: z.literal(1),
    id: z.string(),
    agent: z.string().openapi({ description: "the root agent's definition" }),
    task: z.string(),
    rootAgentId: z.string(),
    status: runStatus,
    createdAt: z.number().openapi({ description: 'epoch milliseconds' }),
    updatedAt: z.number(),
    stoppedMs: z
      .number()
      .optional()
      .openapi({ description: 'ms the run spent detached, left out of wallMs' }),
    detachedAt: z.number().optional().openapi({ description: 'set while the run is detached' }),
    peakParallelism: z
      .number()
      .optional()
      .openapi({ description: 'the most agents busy at once, as of the last detach or the end' }),
    distributed: z
      .literal(true)
      .optional()
      .openapi({ description: 'run in segments by distributed workers (@cohort/bullmq): resume refuses it' }),
    continuedFrom: z
      .object({ runId: z.string(), agentId: z.string() })
      .optional()
      .openapi({ description: 'the settled agent whose session the root continues (continueFrom)' }),
    result: z.unknown().optional(),
    error: errorInfo.optional(),
  })
  .openapi('RunRecord')

export const awaitingShape = z
  .object({
    kind: z.enum(['approval', 'input']),
    callId: z.string().openapi({
      description: "what `approve` and `reject` name, with the agent's id (ids repeat across agents)",
    }),
    key: z.string(),
    tool: z.string(),
    args: z.unknown(),
    prompt: z.string(),
  })
  .openapi('Awaiting', { description: 'What an agent waits on a person for.' })

export const processShape = z
  .object({
    turn: z.number().int(),
    command: z.string(),
    exitCode: z.number().int().nullable(),
    signal: z.string().nullable(),
    durationMs: z.number(),
    stderrTail: z.string().openapi({ description: 'the end of what the command wrote to stderr' }),
    workspace: z.string(),
  })
  .openapi('ProcessRecord', { description: 'How one turn of a process agent ended.' })

export const agentSummaryShape = z
  .object({
    id: z.string(),
    name: z.string(),
    parentId: z.string().nullable(),
    depth: z.number().int(),
    status: z.enum(['idle', 'running', 'suspended', 'completed', 'failed']),
    task: z.string(),
    startedAt: z.number(),
    endedAt: z.number().nullable(),
    turns: z.number().int(),
    busyMs: z.number().int().openapi({ description: 'time at work: its model and tool calls' }),
    result: z.unknown().optional(),
    error: z.object({ code: z.string(), message: z.string() }).optional(),
    awaiting: awaitingShape.optional(),
    processes: z.array(processShape).optional().openapi({ description: "a process agent's turns" }),
    dependsOn: z
      .array(z.string())
      .optional()
      .openapi({ description: 'the siblings (run-wide ids) it starts after: its depends_on' }),
  })
  .openapi('AgentSummary')

const toolCall = z.object({
  id: z.string(),
  name: z.string(),
  arguments: z.union([z.string(), z.record(z.string(), z.unknown())]),
})

export const chatMessageShape = z
  .union([
    z.object({ role: z.literal('system'), content: z.string() }),
    z.object({ role: z.literal('user'), content: z.string() }),
    z.object({ role: z.literal('assistant'), content: z.string(), toolCalls: z.array(toolCall).optional() }),
    z.object({ role: z.literal('tool'), content: z.string(), toolCallId: z.string() }),
  ])
  .openapi('ChatMessage')

export const metricsShape = z
  .looseObject({
    wallMs: z.number(),
    busyMs: z.number(),
    speedup: z.number(),
    efficiency: z.number(),
    peakParallelism: z.number(),
  })
  .openapi('RunMetrics', { description: 'and per-agent figures, tokens and conflicts' })

export const runSummaryShape = runRecordShape
  .extend({
    agentsAwaiting: z
      .number()
      .int()
      .min(0)
      .optional()
      .openapi({
        description:
          'how many of its agents wait on a person (an approval, an answer): 0 once the run has ended; ' +
          'left out for a running run that lives in no process of this server (run by another, or stopped)',
      }),
  })
  .openapi('RunSummary', { description: 'A run record, and whether the run waits on a person.' })

export const runListShape = z.object({ runs: z.array(runSummaryShape) })
export const runViewShape = z
  .object({ run: runRecordShape, agents: z.array(agentSummaryShape), metrics: metricsShape.optional() })
  .openapi('RunView', { description: 'agents in tree order; metrics while the run lives in this server' })
export const agentDetailShape = z
  .object({ agent: agentSummaryShape, messages: z.array(chatMessageShape).readonly() })
  .openapi('AgentDetail')
export const runStateShape = z.object({ runId: z.string(), status: runStatus })

export type RunRecordView = z.infer<typeof runRecordShape>
export type RunSummaryView = z.infer<typeof runSummaryShape>
export type AgentSummaryView = z.infer<typeof agentSummaryShape>
export type ChatMessageView = z.infer<typeof chatMessageShape>
export type RunViewBody = z.infer<typeof runViewShape>
export type AgentDetailBody = z.infer<typeof agentDetailShape>
export type RunListBody = z.infer<typeof runListShape>
export type ErrorBody = z.infer<typeof errorShape>
