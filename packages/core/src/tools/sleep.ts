import { z } from 'zod'
import { defineTool } from './define-tool.js'

/** Waits without blocking: the agent's siblings keep running meanwhile. */
export const sleep = defineTool({
  name: 'sleep',
  description: 'Wait for a number of seconds, then return how long was slept.',
  parameters: z.object({ seconds: z.number().min(0).max(3600) }),
  execute: async ({ seconds }, ctx) => {
    await ctx.sleep(seconds * 1000)
    return { slept: seconds }
  },
})
