import { type ActorRefFrom, assign, emit, enqueueActions, type SnapshotFrom, setup } from 'xstate'
import { type ErrorInfo, ModelError, toErrorInfo } from '../errors.js'
import type { AgentEventInput, PersonAnswer } from '../events/types.js'
import type { ProcessRecord } from '../models/command-model.js'
import {
  type ActOutcome,
  afterAct,
  afterAnswer,
  afterRejection,
  afterSettled,
  afterThought,
  failed,
  type SettledGroup,
  type Step,
  started,
  type ThinkOutcome,
  withMessage,
} from './agent-loop.js'
import type { AgentContext, Answer } from './context.js'

/**
 * What moves an agent. The effects of its states (a model call, a tool, a wait for children) are
 * run by its run's orchestrator on the machine's behalf, which sends their outcomes back as events;
 * the machine computes each step from them (`agent-loop.ts`) and decides where the agent goes.
 */
export type AgentMachineEvent =
  | { type: 'START'; deadline: number | null; note?: string }
  | { type: 'REPLIED'; outcome: ThinkOutcome; maxRepairs: number }
  | { type: 'ACTED'; outcome: ActOutcome; maxRepairs: number }
  | { type: 'CHILDREN_SETTLED'; group: SettledGroup }
  | { type: 'ANSWERED'; answer: Answer }
  | { type: 'REJECTED'; reason: string }
  | { type: 'MESSAGE'; from: string; text: string; id?: string }
  /** The agent's deadline moves: a run resumed after time stopped gives its agents that time back. */
  | { type: 'DEADLINE'; deadline: number }
  /**
   * The call in flight was stopped by a detach after `busyMs`: that time counts as busy, as a
   * failure's does; the call itself runs again when the run is resumed.
   */
  | { type: 'CUT_OFF'; busyMs: number }
  /**
   * `process`: what the failed turn of a process agent left behind, kept in its context;
   * `busyMs` and `retries`: the time and the model retries of a call the failure cut off.
   */
  | { type: 'FAIL'; error: ErrorInfo; process?: ProcessRecord; busyMs?: number; retries?: number }

/**
 * One agent's whole life. `running` is its loop: `thinking` (one model call), then `acting` on
 * each action the reply holds (a tool call, a launch, a message), through `routing`, which reads
 * the step's context and picks the next state: another action, another model call, a wait on
 * children (`suspended.children`) or on a person (`suspended.external`), or the end. `completed`
 * and `failed` are final. The agent's events (`agent.suspended`, `agent.completed`, …) are
 * emitted by the machine (`actor.on('*')`).
 */
export const agentMachine = setup({
  types: {
    context: {} as AgentContext,
    events: {} as AgentMachineEvent,
    input: {} as AgentContext,
    emitted: {} as AgentEventInput,
  },
  guards: {
    hasFailed: ({ context }) => context.error !== undefined,
    hasFinished: ({ context }) => context.endedAt !== null,
    waitsOnChildren: ({ context }) => context.waitingOn !== null,
    waitsOnPerson: ({ context }) => context.awaiting !== null,
    hasActions: ({ context }) => context.pending.length > 0,
  },
  actions: {
    fail: assign(({ context, event }) => (event.type === 'FAIL' ? failed(context, event) : context)),
    /** A model reply or an action's outcome becomes the agent's context; a repair is reported. */
    applyStep: enqueueActions(({ context, event, enqueue }) => {
      const step = stepOf(context, event)
      if (step === undefined) return
      enqueue.assign(step.context)
      if (step.repair !== undefined) enqueue.emit(repairEvent(step))
    }),
    takeMessage: assign(({ context, event }) => {
      const { from, text, id } = event as { from: string; text: string; id?: string }
      return withMessage(context, from, text, id)
    }),
    moveDeadline: assign({
      deadline: ({ context, event }) => (event.type === 'DEADLINE' ? event.deadline : context.deadline),
    }),
    countCutOff: assign({
      busyMs: ({ context, event }) => context.busyMs + (event.type === 'CUT_OFF' ? event.busyMs : 0),
    }),
  },
}).createMachine({
  id: 'agent',
  initial: 'idle',
  context: ({ input }) => input,
  states: {
    idle: {
      on: {
        START: {
          target: 'running',
          actions: [
            assign(({ context, event }) => started(context, event.deadline, event.note)),
            emit(({ context }) => ({
              type: 'agent.started' as const,
              parentId: context.parentId,
              task: context.task,
            })),
          ],
        },
        FAIL: { target: 'failed', actions: 'fail' },
        MESSAGE: { actions: 'takeMessage' },
      },
    },
    running: {
      initial: 'thinking',
      on: {
        FAIL: { target: 'failed', actions: 'fail' },
        MESSAGE: { actions: 'takeMessage' },
        DEADLINE: { actions: 'moveDeadline' },
        CUT_OFF: { actions: 'countCutOff' },
      },
      states: {
        thinking: {
          on: {
            REPLIED: {
              target: 'routing',
              actions: 'applyStep',
            },
          },
        },
        acting: {
          on: {
            ACTED: {
              target: 'routing',
              actions: 'applyStep',
            },
          },
        },
        routing: {
          always: [
            { guard: 'hasFailed', target: '#agent.failed' },
            { guard: 'hasFinished', target: '#agent.completed' },
            { guard: 'waitsOnChildren', target: '#agent.suspended.children' },
            { guard: 'waitsOnPerson', target: '#agent.suspended.external' },
            { guard: 'hasActions', target: 'acting' },
            { target: 'thinking' },
          ],
        },
      },
    },
    suspended: {
      initial: 'children',
      on: {
        FAIL: { target: 'failed', actions: 'fail' },
        MESSAGE: { actions: 'takeMessage' },
        DEADLINE: { actions: 'moveDeadline' },
      },
      states: {
        children: {
          entry: emit(({ context }) => ({
            type: 'agent.suspended' as const,
            waitingOn: context.waitingOn ?? [],
          })),
          on: {
            CHILDREN_SETTLED: {
              target: '#agent.running.routing',
              actions: [
                emit(({ event }) => ({
                  type: 'agent.resumed' as const,
                  settled: event.group.results.map((result) => result.id),
                })),
                assign(({ context, event }) => afterSettled(context, event.group).context),
              ],
            },
          },
        },
        external: {
          entry: emit(({ context }) => ({
            type: 'agent.suspended' as const,
            waitingOn: [],
            ...(context.awaiting && { awaiting: context.awaiting }),
          })),
          on: {
            ANSWERED: {
              target: '#agent.running.acting',
              actions: [
                emit(({ context, event }) =>
                  resumedBy(context, 'approved' in event.answer ? 'approved' : 'answered'),
                ),
                assign(({ context, event }) => afterAnswer(context, event.answer)),
              ],
            },
            REJECTED: {
              target: '#agent.running.routing',
              actions: [
                emit(({ context, event }) => resumedBy(context, 'rejected', event.reason)),
                assign(({ context, event }) => afterRejection(context, event.reason)),
              ],
            },
          },
        },
      },
    },
    completed: {
      type: 'final',
      entry: emit(({ context }) => ({
        type: 'agent.completed' as const,
        result: context.result,
        durationMs: (context.endedAt ?? Date.now()) - context.startedAt,
      })),
    },
    failed: {
      type: 'final',
      entry: emit(({ context }) => ({
        type: 'agent.failed' as const,
        error: context.error ?? { name: 'Error', code: 'ERROR', message: 'unknown failure' },
        durationMs: (context.endedAt ?? Date.now()) - context.startedAt,
      })),
    },
  },
})

/** The `agent.resumed` of an agent a person answered, saying how: read before the answer clears `awaiting`. */
function resumedBy(context: AgentContext, kind: PersonAnswer['kind'], reason?: string): AgentEventInput {
  const { awaiting } = context
  if (!awaiting) return { type: 'agent.resumed', settled: [] }
  const answer: PersonAnswer = { kind, callId: awaiting.callId, tool: awaiting.tool }
  if (reason !== undefined) answer.reason = reason
  return { type: 'agent.resumed', settled: [], answer }
}

/**
 * The event that fails an agent with `error`, cutting off a call that has run for `busyMs`: a
 * failed process turn's record goes with it, and a model call's retries.
 */
export function failEvent(error: unknown, busyMs = 0): Extract<AgentMachineEvent, { type: 'FAIL' }> {
  const event: Extract<AgentMachineEvent, { type: 'FAIL' }> = { type: 'FAIL', error: toErrorInfo(error) }
  if (error instanceof ModelError && error.process) event.process = error.process
  else if (busyMs > 0) event.busyMs = busyMs
  if (error instanceof ModelError && error.retries > 0) event.retries = error.retries
  return event
}

/** The step an effect's outcome makes: a reply (`REPLIED`) or a carried-out action (`ACTED`). */
function stepOf(context: AgentContext, event: AgentMachineEvent): Step | undefined {
  if (event.type === 'REPLIED') return afterThought(context, event.outcome, event.maxRepairs)
  if (event.type === 'ACTED') return afterAct(context, event.outcome, event.maxRepairs)
  return undefined
}

/** A reply the model is asked to repair (unusable, or a launch refused), as the agent's event. */
function repairEvent(step: Step): AgentEventInput {
  return { type: 'agent.repair', error: step.repair ?? '', repairs: step.context.repairs }
}

export type AgentMachine = typeof agentMachine
export type AgentActor = ActorRefFrom<AgentMachine>
export type AgentSnapshot = SnapshotFrom<AgentMachine>
