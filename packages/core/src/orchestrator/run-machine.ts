import { type ActorRefFrom, type AnyActorRef, assign, type SnapshotFrom, setup, stopChild } from 'xstate'
import type { ErrorInfo } from '../errors.js'

export interface RunMachineContext {
  runId: string
  rootAgentId: string | null
  result?: unknown
  error?: ErrorInfo | undefined
}

export type RunMachineEvent =
  /** The run's record names its root agent: started, or read back from the store. */
  | { type: 'ROOT'; agentId: string }
  /** The root agent settled and the run record says so. */
  | { type: 'SETTLED'; status: 'completed' | 'failed' | 'cancelled'; result?: unknown; error?: ErrorInfo }
  /** Every agent is being ended (`run.cancel`). */
  | { type: 'CANCEL'; reason: string }
  /** The run stops in this process without settling (`run.detach`): the store keeps it. */
  | { type: 'DETACH' }
  /** The runtime itself failed (a store that cannot write): the stored run can be resumed. */
  | { type: 'ABORT'; error: ErrorInfo }
  /** An agent of this run stops where it is (detached, or a segment's end). */
  | { type: 'STOP_AGENT'; agent: AnyActorRef }

/** Where the run goes when its root agent settled. */
const settled = [
  { guard: 'completed', target: 'completed', actions: 'keepOutcome' },
  { guard: 'cancelled', target: 'cancelled', actions: 'keepOutcome' },
  { target: 'failed', actions: 'keepOutcome' },
] as const

/**
 * One run's orchestrator as an XState actor. Every agent of the run is an actor created with
 * this one as its parent (`createActor(agentMachine, { parent, systemId })`), so it is reachable
 * as `run.actor.system.get(agentId)`, an inspector sees them all, and their `xstate.done.actor.*`
 * events arrive here. The registry of agents is the orchestrator's `Map`, not this machine's
 * context: a parent whose `children` held thousands of agents would copy them on every change.
 */
export const runMachine = setup({
  types: {
    context: {} as RunMachineContext,
    events: {} as RunMachineEvent,
    input: {} as { runId: string },
  },
  actions: {
    stopAgent: stopChild(({ event }) => (event as { agent: AnyActorRef }).agent),
    keepOutcome: assign(({ event }) => {
      if (event.type === 'SETTLED')
        return event.status === 'completed' ? { result: event.result } : { error: event.error }
      if (event.type === 'ABORT') return { error: event.error }
      return {}
    }),
  },
  guards: {
    completed: ({ event }) => event.type === 'SETTLED' && event.status === 'completed',
    cancelled: ({ event }) => event.type === 'SETTLED' && event.status === 'cancelled',
  },
}).createMachine({
  id: 'run',
  initial: 'running',
  context: ({ input }) => ({ runId: input.runId, rootAgentId: null }),
  on: {
    STOP_AGENT: { actions: 'stopAgent' },
    ROOT: { actions: assign({ rootAgentId: ({ event }) => event.agentId }) },
  },
  states: {
    running: {
      on: {
        CANCEL: 'cancelling',
        SETTLED: settled,
        DETACH: 'detached',
        ABORT: { target: 'failed', actions: 'keepOutcome' },
      },
    },
    cancelling: {
      on: {
        SETTLED: settled,
        DETACH: 'detached',
        ABORT: { target: 'failed', actions: 'keepOutcome' },
      },
    },
    completed: { type: 'final' },
    failed: { type: 'final' },
    cancelled: { type: 'final' },
    detached: { type: 'final' },
  },
})

export type RunMachine = typeof runMachine
export type RunActor = ActorRefFrom<RunMachine>
export type RunSnapshotState = SnapshotFrom<RunMachine>
