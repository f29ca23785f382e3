import type { RunFilter, RunRecord } from './records.js'

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
