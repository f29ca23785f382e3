import { z } from 'zod'

/** One turn of a process agent (`commandModel`): how its command ended, kept in the agent's context. */
export const processRecordSchema = z.object({
  turn: z.number(),
  command: z.string(),
  exitCode: z.number().nullable(),
  signal: z.string().nullable(),
  durationMs: z.number(),
  /** The end of what the command wrote to stderr. */
  stderrTail: z.string(),
  workspace: z.string(),
})
export type ProcessRecord = z.infer<typeof processRecordSchema>
