import { CohortError, type RunRecord, type RunStore } from '@cohort/core'

export interface WaitForRunOptions {
  store: RunStore
  /** Give up after this long (default 60 s). */
  timeoutMs?: number
  /** Time between reads of the run record (default 50 ms). */
  intervalMs?: number
}

/** Polls the store until the run record is no longer running, and returns it. */
export async function waitForRun(runId: string, options: WaitForRunOptions): Promise<RunRecord> {
  const deadline = Date.now() + (options.timeoutMs ?? 60_000)
  const load = async () =>
    options.store.loadRunRecord
      ? options.store.loadRunRecord(runId)
      : (await options.store.loadRun(runId))?.run
  for (;;) {
    const record = await load()
    if (record && record.status !== 'running') return record
    if (Date.now() > deadline) {
      throw new CohortError('TIMEOUT', `run ${runId} did not settle within ${options.timeoutMs ?? 60_000} ms`)
    }
    await new Promise((resolve) => setTimeout(resolve, options.intervalMs ?? 50))
  }
}
