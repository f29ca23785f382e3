import { z } from 'zod'
import { errorMessage, InvalidInputError } from '../errors.js'
import { type RunFilter, type RunId, type RunRecord, type RunRetention, runStatusSchema } from './records.js'

const runFilterSchema = z.object({
  status: z.union([runStatusSchema, z.array(runStatusSchema)]).optional(),
  since: z.number().finite().optional(),
  until: z.number().finite().optional(),
  limit: z.number().int().min(0).optional(),
  offset: z.number().int().min(0).optional(),
})

/**
 * A `RunFilter` from a caller, checked where every store's `listRuns` begins: a status that is no
 * run status, or a negative limit, is an error naming it rather than an empty list.
 */
export function checkRunFilter(filter: RunFilter = {}): RunFilter {
  const checked = runFilterSchema.safeParse(filter)
  if (checked.success) return filter
  const issue = checked.error.issues[0]!
  throw new InvalidInputError(
    `invalid run filter: ${issue.path.join('.') || '(root)'}: ${issue.message}; expected status (${runStatusSchema.options.join(', ')}), since and until (epoch ms), limit and offset (whole numbers, 0 or more)`,
  )
}

/** Applies a `RunFilter` in memory: newest first, then offset and limit. */
export function filterRuns(records: RunRecord[], filter: RunFilter = {}): RunRecord[] {
  const statuses = filter.status === undefined ? undefined : [filter.status].flat()
  const matching = records.filter(
    (run) =>
      (!statuses || statuses.includes(run.status)) &&
      (filter.since === undefined || run.createdAt >= filter.since) &&
      (filter.until === undefined || run.createdAt < filter.until),
  )
  matching.sort((a, b) => b.createdAt - a.createdAt || (a.id < b.id ? -1 : 1))
  const offset = filter.offset ?? 0
  return matching.slice(offset, filter.limit === undefined ? undefined : offset + filter.limit)
}

/**
 * The finished runs `retention` removes, oldest first: those older than `maxAgeMs`, and those
 * past the newest `maxFinishedRuns`. Oldest is the smallest `updatedAt` (when a run finished),
 * ties broken by id in code-unit order; running runs are never chosen.
 */
export function runsToPrune(
  runs: readonly Pick<RunRecord, 'id' | 'status' | 'updatedAt'>[],
  retention: RunRetention,
  now = Date.now(),
): RunId[] {
  const finished = runs.filter((run) => run.status !== 'running').sort(byAge)
  const excess = Math.max(0, finished.length - (retention.maxFinishedRuns ?? Number.POSITIVE_INFINITY))
  const cutoff = retention.maxAgeMs === undefined ? undefined : now - retention.maxAgeMs
  return finished
    .filter((run, index) => index < excess || (cutoff !== undefined && run.updatedAt < cutoff))
    .map((run) => run.id)
}

/** Oldest first: by `updatedAt`, then by id in code-unit order (as a sorted set or `COLLATE "C"` orders). */
export function byAge(
  a: Pick<RunRecord, 'id' | 'updatedAt'>,
  b: Pick<RunRecord, 'id' | 'updatedAt'>,
): number {
  return a.updatedAt - b.updatedAt || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)
}

/** Validates a retention given from outside; returns a copy, which later changes to it do not reach. */
export function checkRetention(retention: RunRetention | undefined): RunRetention {
  if (retention === undefined) return {}
  if (retention === null || typeof retention !== 'object') {
    throw new InvalidInputError(
      `retention must be an object { maxFinishedRuns?, maxAgeMs? }, got ${retention}`,
    )
  }
  const { maxFinishedRuns, maxAgeMs } = retention
  if (
    maxFinishedRuns !== undefined &&
    !(Number.isSafeInteger(maxFinishedRuns) && maxFinishedRuns >= 0) &&
    maxFinishedRuns !== Number.POSITIVE_INFINITY
  ) {
    throw new InvalidInputError(
      `retention.maxFinishedRuns must be a whole number, 0 or more (Infinity keeps every run), got ${maxFinishedRuns}`,
    )
  }
  if (
    maxAgeMs !== undefined &&
    !(typeof maxAgeMs === 'number' && maxAgeMs >= 0 && maxAgeMs <= Number.MAX_SAFE_INTEGER)
  ) {
    throw new InvalidInputError(
      `retention.maxAgeMs must be a number of milliseconds, 0 or more, got ${maxAgeMs}`,
    )
  }
  return { ...retention }
}

/** True when `retention` bounds anything: a store without bounds skips the work of applying it. */
export function hasBounds(retention: RunRetention): boolean {
  return (
    (retention.maxFinishedRuns !== undefined && retention.maxFinishedRuns !== Number.POSITIVE_INFINITY) ||
    retention.maxAgeMs !== undefined
  )
}

/**
 * Applies a store's own retention after it saved a finished run. The record is written: a
 * failure to remove old runs is a process warning, not a failed save (nor a failed run).
 */
export async function applyRetention(prune: () => Promise<unknown>, store: string): Promise<void> {
  try {
    await prune()
  } catch (error) {
    process.emitWarning(
      `cohort: ${store} could not remove finished runs past its retention: ${errorMessage(error)}`,
    )
  }
}
