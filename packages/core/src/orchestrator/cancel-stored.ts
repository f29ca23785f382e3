import { CancelledError, RunNotFoundError, toErrorInfo } from '../errors.js'
import type { RunRecord } from '../persistence/records.js'
import type { Orchestrator } from './orchestrator.js'

/** How `cancelStored` left a run: its record, and whether it had ended before (then it is as it was). */
export interface CancelledRun {
  record: RunRecord
  alreadyEnded: boolean
}

/**
 * Cancels a stored run without running anything, as `run.cancel` would in its process: every
 * agent's actor is restored from its record (no effect starts), the run's own cancel path fails
 * each unsettled one with CANCELLED and writes it, and the run record ends as cancelled. For
 * distributed hosts, whose workers stop their segments of it (`cancelRun` of @cohort/bullmq). A
 * run that had ended (completed, failed, cancelled) is left as it was.
 */
export async function cancelStored(run: Orchestrator, reason: string): Promise<CancelledRun> {
  const stored = await run.reads.wholeRun()
  if (!stored) throw new RunNotFoundError(run.runId)
  if (stored.run.status !== 'running') return { record: stored.run, alreadyEnded: true }
  run.adoptRecord(stored.run)
  // Restored here, never started: `runEffect` and `startWhenReady` are not called.
  for (const record of stored.agents) run.restoreAgent(record)
  const root = run.registry.get(stored.run.rootAgentId)
  if (!root) {
    // Stored before its root (a crash between the two writes): nothing to end but the run.
    const error = toErrorInfo(new CancelledError(reason))
    run.outcome.settle(await run.outcome.finish('cancelled', undefined, error, 0))
  } else if (root.settled) {
    // Its root ended but its record was not written (a crash): it ends as its root did.
    run.runEnded = run.endRun(root)
  } else {
    run.cancel(reason)
  }
  await run.result.catch(() => {})
  // Not settled but failed here: the store could not write (its error is the caller's), and it
  // keeps what it held; a cancel again ends the rest.
  if (!run.endedHere) await run.result
  return { record: run.record!, alreadyEnded: false }
}
