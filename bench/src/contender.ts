/** What one measured run is asked to do; a cell runs one job in a fresh process. */
export type Job =
  | {
      workload: 'fan-out'
      children: number
      steps: number
      latencyMs: number
      /**
       * Cohort only: the store its runs write to, every step written before the effects that
       * depend on it (`durability: 'sync'`), the writes counted. Without it: a memory store, not
       * counted (the runtime's default durability, which is `'sync'` too).
       */
      store?: 'memory' | 'postgres'
    }
  | { workload: 'recursion'; depth: number; latencyMs: number }
  | {
      workload: 'persistence'
      agents: number
      steps: number
      /** `none`: agent writes are dropped, the reference the store's cost is measured against. */
      store: 'none' | 'memory' | 'file'
      /** Runs of the job back to back in the cell, so a small run still measures enough steps. */
      rounds?: number
    }
  | { workload: 'restore'; agents: number; steps: number; latencyMs: number }
  | { workload: 'idle'; agents: number }
  /**
   * One agent of `turns` model calls at 0 ms, each but the last a tool call whose result is
   * `resultBytes` long: does a write cost more as the history grows? Every step written before
   * the next (`durability: 'sync'`).
   */
  | { workload: 'history'; turns: number; resultBytes: number; store: 'memory' | 'file' | 'postgres' }

/** Model calls made, whatever the system calls them. */
export interface StepCount {
  steps: number
  /** Agent records the run wrote (each record of a `saveAgents` batch counts), when counted. */
  writes?: number
  /** Store calls for those records: `saveAgent` calls and `saveAgents` batches. */
  batches?: number
}

export interface PersistenceOutcome extends StepCount {
  /** Writes the system made (a write may cover several steps when it coalesces). */
  writes: number
  /**
   * Main-thread time spent serialising and storing, in ms, over the whole run: the synchronous
   * part of each write (all of it for an in-memory store; a file store's I/O is not in it).
   */
  storeMs: number
}

export interface HistoryOutcome extends StepCount {
  /** µs a step over the first tenth of the turns (from the second turn), and over the last tenth. */
  firstUs: number
  lastUs: number
}

export interface RestoreOutcome {
  agents: number
  snapshotMs: number
  snapshotBytes: number
  restoreMs: number
  /** From the restore call to the run's result. */
  finishMs: number
}

/** Called by a contender once every agent is suspended; resolves when memory has been read. */
export type MeasureIdle = () => Promise<void>

/** A system under test: Cohort, or a peer built on another library or on nothing. */
export interface Contender {
  fanOut(job: Extract<Job, { workload: 'fan-out' }>): Promise<StepCount>
  recursion?(job: Extract<Job, { workload: 'recursion' }>): Promise<StepCount>
  persistence?(job: Extract<Job, { workload: 'persistence' }>): Promise<PersistenceOutcome>
  restore?(job: Extract<Job, { workload: 'restore' }>): Promise<RestoreOutcome>
  history?(job: Extract<Job, { workload: 'history' }>): Promise<HistoryOutcome>
  idle?(job: Extract<Job, { workload: 'idle' }>, measure: MeasureIdle): Promise<void>
  /** Called once the cell has measured: closes stores and drops what they made (a schema). */
  close?(): Promise<void>
}

/** A model call of fixed latency: a timer when latency is positive, nothing otherwise. */
export function modelLatency(latencyMs: number): Promise<void> {
  if (latencyMs <= 0) return Promise.resolve()
  return new Promise((resolve) => setTimeout(resolve, latencyMs))
}
