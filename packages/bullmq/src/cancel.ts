import { InvalidInputError, type RunStatus, type Runtime } from '@cohort/core'
import type { Queue } from 'bullmq'
import { resolveConnection, withOwnRedis } from './connection.js'
import { liveJobsOf, type QueueInput, reachQueue, topmost, withQueue } from './jobs.js'
import { checkOptions, checkQueueCall, queueOptionNames } from './options.js'

export type CancelRunOptions = QueueInput & {
  /** A runtime with the run's agents registered (as `enqueueRun`'s), on the run's store. */
  runtime: Runtime
  runId: string
  /** Why: the run record's error and each cancelled agent's (default "cancelled by the caller"). */
  reason?: string
  /** How long to wait for the run's running segments to stop (default 10 s); see `cancelRun`. */
  waitMs?: number
}

const cancelOptionNames = [
  ...queueOptionNames,
  'runtime',
  'runId',
  'reason',
  'waitMs',
] as const satisfies readonly (keyof CancelRunOptions)[]

export interface CancelRunResult {
  runId: string
  /** The run's status now: cancelled, or how it had ended before (`alreadyEnded`). */
  status: Exclude<RunStatus, 'running'>
  /** The run had ended (completed, failed or cancelled) before this call: its records are as they were. */
  alreadyEnded: boolean
}

/** The channel on which workers of `queue` hear of cancelled runs (the run id is the message). */
export function cancelChannel(queue: Pick<Queue, 'toKey'>): string {
  return queue.toKey('cancelled-runs')
}

/**
 * Ends a distributed run as cancelled, as `run.cancel` would in one process: the store first
 * (`runtime.cancelStored`: the run record cancelled with `reason`, every unsettled agent failed
 * with CANCELLED; settled records are final, so a segment still running cannot undo it), then the
 * workers are told (Redis pub/sub) to abort their running segments of the run, and its jobs are
 * taken off the queue once none runs (for up to `waitMs`; a job held by a dead worker is left, and
 * does nothing when it runs again: its agent is settled). Idempotent: a run that had ended is
 * left as it was, with `alreadyEnded`, and any jobs of it left are still taken off.
 */
export async function cancelRun(options: CancelRunOptions): Promise<CancelRunResult> {
  checkOptions('cancelRun', options, cancelOptionNames)
  checkQueueCall('cancelRun', options)
  const { runtime, runId, waitMs = 10_000 } = options
  // Checked before anything is cancelled: NaN would leave the wait below without an end.
  if (typeof waitMs !== 'number' || !(waitMs >= 0) || !Number.isFinite(waitMs))
    throw new InvalidInputError(`cancelRun: waitMs must be a number of ms, 0 or more, got ${String(waitMs)}`)
  return withQueue(options, async (queue) => {
    await reachQueue(queue, 'cancelRun')
    const { record, alreadyEnded } = await runtime.cancelStored(runId, options.reason)
    await withOwnRedis(options.queue?.opts.connection ?? resolveConnection(options), (redis) =>
      redis.publish(cancelChannel(queue), runId),
    )
    await removeRunJobs(queue, runId, waitMs)
    return { runId, status: record.status as CancelRunResult['status'], alreadyEnded }
  })
}

/**
 * Takes every live job of the run off the queue, from the top (a parent with its children), until
 * none is left or `waitMs` has passed. BullMQ refuses a job a worker holds (and a parent with such
 * a child): tried again once its segment, aborted, has ended.
 */
async function removeRunJobs(queue: Queue, runId: string, waitMs: number): Promise<void> {
  const deadline = Date.now() + waitMs
  for (;;) {
    const live = await liveJobsOf(queue, runId)
    if (live.length === 0 || Date.now() > deadline) return
    for (const job of topmost(live)) await queue.remove(job.id!, { removeChildren: true })
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}
