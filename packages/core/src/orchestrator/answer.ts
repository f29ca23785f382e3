import { alreadyEnded, InvalidInputError } from '../errors.js'
import { RunControl } from './control.js'
import type { Orchestrator } from './orchestrator.js'

/** What a person says to an agent that waits on them; `approve` and `reject` name the agent's call id. */
export type Answer = { approve: string } | { reject: string; reason?: string } | { payload: unknown }

/**
 * Gives a stored agent its answer without running anything: the agent is restored, takes the
 * answer, and its record is written back. A distributed host then runs it again (`resumeRun`).
 * An answer the agent cannot take is refused and the store is left as it was.
 */
export async function answerStored(run: Orchestrator, agentId: string, answer: Answer): Promise<void> {
  if (answer === null || typeof answer !== 'object' || Array.isArray(answer)) {
    throw new InvalidInputError(
      `an answer must be { approve: callId }, { reject: callId, reason? } or { payload }, got ${JSON.stringify(answer)}`,
    )
  }
  const runRecord = await run.reads.runRecord()
  if (runRecord.status !== 'running') {
    throw new InvalidInputError(alreadyEnded(`run ${run.runId}`, runRecord.status))
  }
  const record = await run.reads.agentRecord(agentId)
  if (!record) throw new InvalidInputError(`run ${run.runId} has no agent "${String(agentId).slice(0, 80)}"`)
  run.adoptRecord(runRecord)
  // Changed here and written, never run: the host runs it again.
  const entry = run.restoreAgent(record, 'remote')
  try {
    const control = new RunControl(run)
    if ('approve' in answer) control.approve(agentId, answer.approve)
    else if ('reject' in answer)
      control.reject(agentId, answer.reject, answer.reason ?? 'rejected by a person')
    else control.resume(agentId, answer.payload)
    await run.writer.written(entry)
  } finally {
    run.release(entry)
  }
}
