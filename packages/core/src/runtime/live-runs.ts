import { CohortError } from '../errors.js'
import { EventBus } from '../events/event-bus.js'
import { guardedInspector } from '../orchestrator/config.js'
import type { SegmentHooks } from '../orchestrator/launch.js'
import { runBusyMs, runTotals, runWallMs } from '../orchestrator/metrics.js'
import { Orchestrator } from '../orchestrator/orchestrator.js'
import { Run } from './run.js'
import { RunClaims } from './run-claims.js'
import { addTotals, newTotals, type RuntimeTotals } from './runtime-metrics.js'
import type { RuntimeParts } from './runtime-parts.js'
import type { RuntimeOptions } from './types.js'

/** A run this runtime holds in memory, and the orchestrator that runs it. */
export interface LiveRun {
  run: Run
  orchestrator: Orchestrator
}

/** An orchestrator whose events reach the runtime's; with `segment`, one that runs segments for it. */
export type OrchestratorFor = (
  runId: string,
  segment?: SegmentHooks,
) => { orchestrator: Orchestrator; bus: EventBus }

/** The runs of one runtime: those in memory, its claims on them, and whether it was shut down. */
export interface LiveRuns {
  readonly runs: Map<string, LiveRun>
  readonly claims: RunClaims
  /** Every run's events pass through it: the logger, and `runtime.on`. */
  readonly everyRun: EventBus
  /** The totals of the runs ended here. */
  readonly totals: RuntimeTotals
  readonly orchestratorFor: OrchestratorFor
  /** A run in memory with its orchestrator, which leaves memory (counted if it ended here) once settled. */
  open(runId: string): LiveRun
  /**
   * Runs `work` on the stored run `runId` after this runtime's earlier such work on it (resume,
   * answer, cancelStored): the run's claim is this runtime's whoever asks, so it keeps apart
   * other processes, not two calls of this one.
   */
  oneAtATime<T>(runId: string, work: () => Promise<T>): Promise<T>
  /** Throws `SHUT_DOWN` after `shutDown`. */
  refuseIfShutDown(): void
  /** From now on nothing starts or resumes. */
  shutDown(): void
}

/** The runtime's table of live runs, made once by `createRuntime` from its options and parts. */
export function liveRuns(options: RuntimeOptions, parts: RuntimeParts): LiveRuns {
  const { workspaces } = parts
  const everyRun = eventsOfEveryRun(options)
  const runs = new Map<string, LiveRun>()
  // A run another process takes over (this one stalled past its claim) stops here; not one whose
  // final record is being written, which is let go of next: a store's retention may remove a
  // finished run, its claim with it, before that, and the renewal then finds no claim.
  const claims = new RunClaims(parts.store, parts.storeTimeoutMs, (runId, error) => {
    const orchestrator = runs.get(runId)?.orchestrator
    if (orchestrator && !orchestrator.outcome.finishing) orchestrator.abort(error)
  })
  const totals = newTotals()
  const orchestratorFor = orchestratorFactory(options, parts, everyRun, claims)

  const open = (runId: string) => {
    const { orchestrator, bus } = orchestratorFor(runId)
    const run = new Run(orchestrator, bus)
    runs.set(runId, { run, orchestrator })
    // Settled runs leave memory; the store keeps them. A run is counted once, when it ends: a
    // detached one is counted by the process that finishes it, which holds its whole usage again.
    orchestrator.result
      .finally(() => {
        // Its claim was let go of by the orchestrator, before its end was told.
        runs.delete(runId)
        workspaces?.forget(runId)
        const status = orchestrator.record?.status ?? 'running'
        const { record, registry } = orchestrator
        if (status !== 'running' && orchestrator.endedHere && record) {
          const ended = { runId, status, wallMs: runWallMs(record), busyMs: runBusyMs(registry.values()) }
          addTotals(totals, ended, runTotals(registry.values()))
        }
      })
      .catch(() => {})
    return { run, orchestrator }
  }

  let isShutDown = false
  const refuseIfShutDown = () => {
    if (isShutDown) {
      throw new CohortError(
        'SHUT_DOWN',
        'this runtime was shut down (runtime.shutdown): it starts and resumes no run; its runs are stored, for a new runtime to resume',
      )
    }
  }
  const shutDown = () => {
    isShutDown = true
  }
  const queued = new Map<string, Promise<unknown>>()
  const oneAtATime = <T>(runId: string, work: () => Promise<T>): Promise<T> => {
    const mine = (queued.get(runId) ?? Promise.resolve()).then(work)
    const done = mine.catch(() => {})
    queued.set(runId, done)
    // Nothing kept once the last is done: a server touches many runs over its life.
    void done.then(() => {
      if (queued.get(runId) === done) queued.delete(runId)
    })
    return mine
  }
  return { runs, claims, everyRun, totals, orchestratorFor, open, oneAtATime, refuseIfShutDown, shutDown }
}

function eventsOfEveryRun(options: RuntimeOptions): EventBus {
  const everyRun = new EventBus()
  if (options.logger) {
    const sink = options.logger
    everyRun.subscribe((event) => sink.handle(event))
  }
  return everyRun
}

function orchestratorFactory(
  options: RuntimeOptions,
  parts: RuntimeParts,
  everyRun: EventBus,
  claims: RunClaims,
): OrchestratorFor {
  const { definitions, limits, store, scheduler, redact, workspaces, storeTimeoutMs } = parts
  const inspect = options.inspect && guardedInspector(options.inspect)
  return (runId, segment) => {
    const bus = new EventBus(everyRun)
    const orchestrator = new Orchestrator({
      runId,
      definitions,
      model: options.model,
      limits,
      store,
      bus,
      scheduler,
      onCycle: options.onCycle ?? 'refuse',
      redact,
      storeTimeoutMs,
      workspaces,
      durability: options.durability ?? 'sync',
      inspect,
      segment,
      // A distributed run's segments run in many workers at once: its queue keeps them apart.
      claims: segment
        ? undefined
        : {
            claim: () => claims.claim(runId),
            release: () => claims.release(runId),
            check: () => claims.check(runId),
          },
    })
    return { orchestrator, bus }
  }
}
