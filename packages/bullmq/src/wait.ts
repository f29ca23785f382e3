import { CohortError, RunNotFoundError, type RunRecord, type RunStore, readRunRecord } from '@cohort/core'

export interface WaitForRunOptions {
  store: RunStore
  /** Give up after this long (default 60 s). */
  timeoutMs?: number
  /** Time between reads of the run record (default 50 ms). */
  intervalMs?: number
}

/**
 * Polls the store until the run record is no longer running, and returns it. A run the store
 * does not hold at the first read is RUN_NOT_FOUND at once (`enqueueRun` stores a run before it returns).
 */
export async function waitForRun(runId: string, options: WaitForRunOptions): Promise<RunRecord> {
  const deadline = Date.now() + (options.timeoutMs ?? 60_000)
  for (let first = true; ; first = false) {
    const record = await readRunRecord(options.store, runId)
    if (!record && first) throw new RunNotFoundError(runId)
    if (record && record.status !== 'running') return record
    if (Date.now() > deadline) {
      throw new CohortError('TIMEOUT', `run ${runId} did not settle within ${options.timeoutMs ?? 60_000} ms`)
    }
    await new Promise((resolve) => setTimeout(resolve, options.intervalMs ?? 50))
  }
}
