import { type ActorScope, createActor, type SnapshotFrom, setup } from 'xstate'
import { toErrorInfo } from '../errors.js'
import type { AgentEventInput } from '../events/types.js'
import type { AgentContext } from './context.js'

/**
 * What moves an agent between the states of its machine. Each event carries the agent's
 * context as the step that caused it left it (computed by the think/act loop, `agent-loop.ts`).
 */
export type LifecycleEvent =
  | { type: 'RUN'; context: AgentContext }
  | { type: 'SUSPEND'; context: AgentContext }
  | { type: 'AWAIT'; context: AgentContext }
  | { type: 'FINISH'; context: AgentContext }
  | { type: 'FAIL'; context: AgentContext }

/** Reports what happens to an agent (an `agent.*` event): the orchestrator's emitter. */
export type Notify = (context: AgentContext, event: AgentEventInput) => void

/**
 * One agent's lifecycle: `idle` → `running` ⇄ `suspended` (on its children, or on the outside
 * world: an approval, an input) → `completed` or `failed`, both final. The machine decides which
 * moves are legal and reports each state it enters; the loop inside `running` (thinking, then
 * executing each parsed action: the context's `phase`) is run by the orchestrator as plain
 * steps, written to the store one by one, so a step costs no transition. (Two XState
 * transitions a step were most of what a step cost, and more than a model call at 0 ms.)
 *
 * The agent's live context is the orchestrator's (`AgentEntry.context`), and each event brings
 * it along; the machine's own context stays the one it was created or restored with. Taking the
 * event's context in with `assign` would cost more than the rest of a transition: XState copies
 * the context with `Object.assign({}, context, update)`, which V8 runs on its slow path for an
 * object of 30 fields (about 20 µs, against 3 µs for the transition). A stored agent is the
 * machine's persisted snapshot with the live context in it (`toAgentRecord`), so a restored
 * machine starts from the latest context.
 */
export function createAgentMachine(notify: Notify) {
  const report =
    (pick: (context: AgentContext) => AgentEventInput) =>
    ({ event }: { event: LifecycleEvent }) =>
      notify(event.context, pick(event.context))

  return setup({
    types: {} as { context: AgentContext; events: LifecycleEvent; input: AgentContext },
  }).createMachine({
    id: 'agent',
    initial: 'idle',
    context: ({ input }) => input,
    on: { FAIL: '.failed' },
    states: {
      idle: {
        on: { RUN: 'running' },
      },
      running: {
        on: {
          SUSPEND: 'suspended.children',
          AWAIT: 'suspended.external',
          FINISH: 'completed',
        },
      },
      suspended: {
        initial: 'children',
        on: {
          RUN: 'running',
          // The next action of the reply after a wait may be another wait, or `finish`.
          SUSPEND: { target: '.children', reenter: true },
          FINISH: 'completed',
        },
        states: {
          children: {
            entry: report((context) => ({ type: 'agent.suspended', waitingOn: context.waitingOn ?? [] })),
          },
          external: {
            entry: report((context) => ({
              type: 'agent.suspended',
              waitingOn: [],
              ...(context.awaiting && { awaiting: context.awaiting }),
            })),
          },
        },
      },
      completed: {
        type: 'final',
        entry: report((context) => ({
          type: 'agent.completed',
          result: context.result,
          durationMs: (context.endedAt ?? Date.now()) - context.startedAt,
        })),
      },
      failed: {
        type: 'final',
        entry: report((context) => ({
          type: 'agent.failed',
          error: context.error ?? toErrorInfo(new Error('unknown failure')),
          durationMs: (context.endedAt ?? Date.now()) - context.startedAt,
        })),
      },
    },
  })
}

export type AgentMachine = ReturnType<typeof createAgentMachine>
export type AgentState = SnapshotFrom<AgentMachine>

/** An entry action as XState ran it: run again, with another event, for the same move. */
interface EntryAction {
  exec: ((info: unknown, params: unknown) => void) | undefined
  params: unknown
}

/** Who hears the entry actions of the move being made: the run whose agent makes it. */
let listener: Notify | undefined

/**
 * One agent machine for the process. Its moves are the same in every run, and creating it (and
 * the actor that stands for `self`) cost a quarter of a small run.
 */
const machine = createAgentMachine((context, event) => listener?.(context, event))
// Never started: it stands for `self` in actions' arguments (ours read only the event).
const self = createActor(machine, { input: {} as AgentContext })
/** Set while XState computes a move: the actions it runs, kept for the agents that make it next. */
let ran: EntryAction[] | undefined
/** What XState's pure `transition` builds on every call; built once, it runs actions at once. */
const scope = {
  self,
  system: self.system,
  id: '',
  sessionId: '',
  logger: () => {},
  defer: () => {},
  emit: () => {},
  stopChild: () => {},
  actionExecutor: (action: EntryAction & { info: unknown }) => {
    ran?.push({ exec: action.exec, params: action.params })
    action.exec?.(action.info, action.params)
  },
} as unknown as ActorScope<AgentState, LifecycleEvent>
/** Snapshots by state value, and moves by state value and event type. */
const states = new Map<string, AgentState>()
const moves = new Map<string, { to: AgentState; actions: EntryAction[] }>()
/** The context of every cached snapshot: an agent's own is `AgentEntry.context`, never this. */
const noContext = Object.freeze({}) as AgentContext

/**
 * The agent machine as one run steps it for each of its agents, without an actor per agent: an
 * agent's state is the machine's snapshot, and XState computes each of its transitions and runs
 * the actions of the states it enters. (An actor per agent cost 14 µs of creating, starting and
 * stopping on top of the one transition most agents make, `running` → `completed`.)
 *
 * The machine has no guards and no `assign`: where a move leads, and which entry actions it
 * runs, depend on the state's value and the event's type alone. So XState computes each move
 * once per process, and later agents making it get the same (immutable) snapshot and have its
 * actions run with their own event, reported to their own run. A transition cost more than the
 * rest of an agent's last step, and every agent of a fan-out makes the same two or three moves.
 * The snapshots hold no agent's context: the orchestrator keeps it (`AgentEntry.context`), and
 * writes it into the agent's record.
 */
export class AgentLifecycle {
  readonly machine: AgentMachine = machine

  constructor(private readonly notify: Notify) {}

  /** The state whose value is `value` (a new agent, or a stored one: an unknown value throws). */
  at(value: AgentState['value']): AgentState {
    const key = valueKey(value)
    let state = states.get(key)
    if (state === undefined) {
      state = machine.resolveState({ value, context: noContext })
      states.set(key, state)
    }
    return state
  }

  /** The state after `event`, its entry actions run; the same state when `event` is not taken there. */
  next(state: AgentState, event: LifecycleEvent): AgentState {
    // A listener of the run's events may move another run's agent from inside an entry action.
    const outerListener = listener
    listener = this.notify
    try {
      const key = `${valueKey(state.value)} ${event.type}`
      const move = moves.get(key)
      if (move !== undefined) {
        if (move.actions.length > 0) {
          const info = { event, context: event.context, self, system: self.system }
          for (const action of move.actions) action.exec?.(info, action.params)
        }
        return move.to
      }
      const outerRan = ran
      ran = []
      try {
        const to = machine.transition(state, event, scope)
        moves.set(key, { to, actions: ran })
        return to
      } finally {
        ran = outerRan
      }
    } finally {
      listener = outerListener
    }
  }
}

function valueKey(value: unknown): string {
  return typeof value === 'string' ? value : JSON.stringify(value)
}
