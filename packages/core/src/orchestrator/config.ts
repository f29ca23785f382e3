import { type InspectionEvent, type Observer, toObserver } from 'xstate'
import type { AgentDefinition } from '../agent/define-agent.js'
import type { RunLimits } from '../agent/limits.js'
import { errorMessage } from '../errors.js'
import type { EventBus } from '../events/event-bus.js'
import type { ChatModel } from '../models/types.js'
import type { RunStore } from '../persistence/records.js'
import type { Redactor } from '../protocol/redact.js'
import type { Scheduler } from '../scheduler/scheduler.js'
import type { Workspaces } from '../workspaces/workspaces.js'
import type { SegmentHooks } from './launch.js'

/**
 * When a step is written. `sync`: before any effect that depends on it starts (the next model
 * call, a tool call, a child's first call), so a crash repeats only what was in flight. `async`:
 * behind the agents, for throughput; a crash may then repeat the steps not yet written.
 */
export type Durability = 'sync' | 'async'

/** An XState inspector: `createBrowserInspector().inspect`, or any function of inspection events. */
export type Inspector = Observer<InspectionEvent> | ((event: InspectionEvent) => void)

/**
 * `inspect` as the runtime's actors are given it: an inspector that throws is reported once and
 * called no more, as an event listener is (`EventBus`). XState calls it inside the actors' own
 * transitions: its throw would fail `runtime.start`, or escape as an unhandled rejection mid-run.
 */
export function guardedInspector(inspect: Inspector): Inspector {
  const observer = toObserver(inspect)
  let broken = false
  return (event) => {
    if (broken) return
    try {
      observer.next?.(event)
    } catch (error) {
      broken = true
      process.emitWarning(
        `cohort: the inspect given to createRuntime threw and is called no more: ${errorMessage(error)}`,
      )
    }
  }
}

export interface OrchestratorConfig {
  runId: string
  definitions: ReadonlyMap<string, AgentDefinition>
  model: ChatModel | undefined
  limits: RunLimits
  store: RunStore
  bus: EventBus
  scheduler: Scheduler
  onCycle: 'refuse' | 'sequential'
  redact: Redactor
  /** A store call that takes longer fails the run with a StoreError. */
  storeTimeoutMs: number
  workspaces: Workspaces | undefined
  durability: Durability
  inspect?: Inspector | undefined
  /**
   * This process's claim on the run (`RunClaims`): taken before a start creates it (a run another
   * process runs is refused), let go of before the run's end or detach is heard of.
   */
  claims?:
    | {
        claim(): Promise<void>
        release(): Promise<void>
        /** Before each write: past the claim's end, it is renewed first; rejects when the run was lost. */
        check(): Promise<void> | undefined
      }
    | undefined
  /** Set when this orchestrator runs one segment of one agent for a distributed host. */
  segment?: SegmentHooks | undefined
}
