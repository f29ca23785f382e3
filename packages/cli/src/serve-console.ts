import { type CohortEvent, describeEvent } from '@cohort/core'
import type { Refusal } from './server/errors.js'
import { answerCommands } from './waiting.js'

/**
 * What `cohort serve` prints about the runs it hosts: each run's start and end, each wait on a
 * person with how to answer it, and the answer. Runs share the console, so a line names its run
 * and its time; every step is in the log files.
 */
export function serveLine(event: CohortEvent, server: string): string | undefined {
  const line = describeEvent(event)
  if (!line) return undefined
  const at = new Date(event.at).toISOString()
  if (event.type.startsWith('run.')) return `${at} ${line.text}\n`
  if (event.type === 'agent.resumed' && event.answer) return `${at} run ${event.runId}: ${line.text}\n`
  if (event.type === 'agent.suspended' && event.awaiting) {
    const { runId, agentId } = event
    const how = answerCommands(runId, agentId, event.awaiting)
    return `${at} run ${runId}: ${line.text}; answer in the inspector (${server}) or with ${how} and --server with the link above\n`
  }
  return undefined
}

/** A warning line for a request the server refused: what it asked for and why. */
export function refusalLine(refusal: Refusal): string {
  return `${new Date().toISOString()} refused ${refusal.method} ${refusal.path} (${refusal.status}): ${refusal.reason}\n`
}
