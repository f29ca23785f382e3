import {
  CohortError,
  InvalidInputError,
  RunNotFoundError,
  type RunRecord,
  type RunStore,
  readRunRecord,
} from '@cohort/core'
import { checkOptions, refuseOption } from './options.js'

export interface WaitForRunOptions {
  store: RunStore
  /** Give up after this long (default 60 s; `Infinity`: never). */
  timeoutMs?: number
  /** Time between reads of the run record (default 50 ms). */
  intervalMs?: number
}

const waitOptionNames = [
  'store',
  'timeoutMs',
  'intervalMs',
] as const satisfies readonly (keyof WaitForRunOptions)[]

/**
 * Polls the store until the run record is no longer running, and returns it. A run the store
 * does not hold at the first read is RUN_NOT_FOUND at once (`enqueueRun` stores a run before it returns).
 */
export async function waitForRun(runId: string, options: WaitForRunOptions): Promise<RunRecord> {
  checkOptions('waitForRun', options, waitOptionNames)
  if (typeof (options.store as Partial<RunStore> | undefined)?.loadRun !== 'function')
    refuseOption('waitForRun', 'store', 'a RunStore (the one the workers write to)', options.store)
  const timeoutMs = msOption('timeoutMs', options.timeoutMs, 60_000)
  const intervalMs = msOption('intervalMs', options.intervalMs, 50)
  const deadline = Date.now() + timeoutMs
  for (let first = true; ; first = false) {
    const record = await readRunRecord(options.store, runId)
    if (!record && first) throw new RunNotFoundError(runId)
    if (record && record.status !== 'running') return record
    if (Date.now() > deadline) {
      throw new CohortError('TIMEOUT', `run ${runId} did not settle within ${timeoutMs} ms`)
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs))
  }
}

/** A wait's option in ms, or its default: NaN, a string or a negative number would never time out (or poll at once). */
function msOption(name: 'timeoutMs' | 'intervalMs', value: unknown, fallback: number): number {
  if (value === undefined) return fallback
  if (typeof value !== 'number' || !(value >= 0) || (name === 'intervalMs' && !Number.isFinite(value)))
    throw new InvalidInputError(`waitForRun: ${name} must be a number of ms, 0 or more, got ${String(value)}`)
  return value
}
