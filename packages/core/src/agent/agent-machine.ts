import { assign, setup } from 'xstate'
import { CancelledError, type ErrorInfo, LimitExceededError, ParseError, toErrorInfo } from '../errors.js'
import type { AgentEventInput } from '../events/types.js'
import type { ProcessRecord } from '../models/command-model.js'
import type { ChatMessage, TokenUsage } from '../models/types.js'
import type { Action, ParseResult } from '../protocol/actions.js'
import { actionReply, childResultsMessage, inboxMessage } from '../protocol/feedback.js'
import type { Conflict } from '../workspaces/workspaces.js'
import {
  type AgentContext,
  type AgentInput,
  type Awaiting,
  type ChildLink,
  type ChildResult,
  initialContext,
} from './context.js'

export interface ThinkOutcome {
  assistant: ChatMessage
  parse: ParseResult
  /** Messages that tell the model why its reply could not be used. */
  feedback: ChatMessage[]
  usage?: TokenUsage
  cost?: number
  durationMs: number
  retries?: number
  process?: ProcessRecord
  /** Inbox messages (the first n) that were delivered into this turn. */
  inboxConsumed: number
}

/** Children that settled, and files more than one of them changed in their workspaces. */
export interface SettledGroup {
  results: ChildResult[]
  conflicts: Conflict[]
}

export interface ActOutcome {
  messages: ChatMessage[]
  children?: ChildLink[]
  /** Set when the action was refused (a limit): the rest of the reply is dropped. */
  refused?: string
  /** Set when the action needs an approval or input from outside first. */
  suspend?: Awaiting
  durationMs?: number
}

/**
 * The side effects an agent needs; the orchestrator provides them. It runs the effect a
 * state calls for (thinking: `think`, executing: `act`, suspended on children: `awaitChildren`)
 * and sends its outcome back as an event (THOUGHT, ACTED, SETTLED, or EFFECT_FAILED).
 */
export interface AgentServices {
  think(agentId: string, signal: AbortSignal): Promise<ThinkOutcome>
  act(agentId: string, action: Action, signal: AbortSignal): Promise<ActOutcome>
  awaitChildren(agentId: string, ids: string[], signal: AbortSignal): Promise<SettledGroup>
  notify(context: AgentContext, event: AgentEventInput): void
  maxRepairs(context: AgentContext): number
}

export type AgentEvent =
  | { type: 'START'; context?: string; deadline?: number | null }
  | { type: 'THOUGHT'; output: ThinkOutcome }
  | { type: 'ACTED'; output: ActOutcome }
  | { type: 'SETTLED'; output: SettledGroup }
  | { type: 'EFFECT_FAILED'; error: unknown }
  | { type: 'CANCEL'; reason?: string }
  | { type: 'FAIL'; error: ErrorInfo }
  | { type: 'MESSAGE'; from: string; text: string }
  | { type: 'APPROVE'; callId: string }
  | { type: 'REJECT'; callId: string; reason: string }
  | { type: 'RESUME'; payload: unknown }

type Output<T> = { output: T }
const thinkOutput = (event: unknown) => (event as Output<ThinkOutcome>).output
const actOutput = (event: unknown) => (event as Output<ActOutcome>).output

type Args = { context: AgentContext; event: { type: string } }
type Update = (args: Args) => Partial<AgentContext>
type Guard = (args: Args) => boolean

/**
 * One agent: `running` loops thinking (one model call) → executing (each parsed action in
 * order), its `phase`; `suspended` waits on children or on the outside world (an approval, an input);
 * `completed` and `failed` are final. The machine is pure: the orchestrator runs the effect
 * each state calls for (a model call, an action, a wait) and sends its outcome back as an
 * event, so every step is an event, and a restored agent re-runs whatever was in flight.
 * After each step the next pending action picks the next state directly (no eventless
 * transitions): a step is one macrostep.
 */
export function createAgentMachine(services: AgentServices) {
  // Guards and actions of one transition see the same event and context: compute an update
  // once for both. The last pair is enough (they run one after the other), and cheaper than a map.
  const memo = (update: Update): Update => {
    let lastEvent: object | undefined
    let lastContext: object | undefined
    let lastValue: Partial<AgentContext> = {}
    return (args) => {
      if (args.event !== lastEvent || args.context !== lastContext) {
        lastValue = update(args)
        lastEvent = args.event
        lastContext = args.context
      }
      return lastValue
    }
  }
  const notify = (pick: (args: Args) => AgentEventInput) => (args: Args) =>
    services.notify(args.context, pick(args))

  /**
   * Where an agent goes once `update` is applied: its next pending action decides. From inside
   * `running` the think/act loop is a transition without a target (it only sets `phase`): XState
   * computes no exit and entry sets for it, which halves the cost of a step's two transitions.
   */
  const route = (
    from: 'running' | 'suspended',
    when: Guard,
    rawUpdate: Update,
    ...after: ((args: Args) => void)[]
  ) => {
    const update = memo(rawUpdate)
    const nextOf = (args: Args) => (update(args).pending ?? args.context.pending)[0]
    const toRunning = from === 'running' ? {} : { target: '#agent.running' }
    // XState cannot type transitions built outside the machine config; they are checked by the tests.
    return [
      {
        guard: (args: Args) => when(args) && nextOf(args) === undefined,
        ...toRunning,
        actions: [assign((args: Args) => ({ ...update(args), phase: 'thinking' as const })), ...after],
      },
      {
        guard: (args: Args) => when(args) && nextOf(args)?.action === 'finish',
        target: '#agent.completed',
        actions: [
          assign((args: Args) => ({
            ...update(args),
            result: (nextOf(args) as { result: unknown }).result,
            pending: [],
            endedAt: Date.now(),
          })),
          ...after,
        ],
      },
      {
        guard: (args: Args) => when(args) && nextOf(args)?.action === 'wait_for_subagents',
        target: '#agent.suspended',
        actions: [
          assign((args: Args) => {
            const changed = update(args)
            return { ...changed, ...waitFor({ ...args.context, ...changed }) }
          }),
          ...after,
        ],
      },
      {
        guard: when,
        ...toRunning,
        actions: [assign((args: Args) => ({ ...update(args), phase: 'executing' as const })), ...after],
      },
    ] as never[]
  }
  const always: Guard = () => true
  // A stale outcome (of an effect from the other phase) must not move the loop.
  const thinking: Guard = ({ context }) => context.phase === 'thinking'
  const executing: Guard = ({ context }) => context.phase === 'executing'

  return setup({
    types: {} as { context: AgentContext; events: AgentEvent; input: AgentInput },
  }).createMachine({
    id: 'agent',
    initial: 'idle',
    context: ({ input }) => initialContext(input),
    on: {
      CANCEL: {
        target: '.failed',
        actions: assign(({ event }) => failure(new CancelledError(event.reason ?? 'cancelled'))),
      },
      FAIL: {
        target: '.failed',
        actions: assign(({ event }) => ({ error: event.error, endedAt: Date.now() })),
      },
      MESSAGE: {
        actions: assign(({ context, event }) => ({
          inbox: [...context.inbox, { from: event.from, text: event.text }],
        })),
      },
    },
    states: {
      idle: {
        on: {
          START: {
            target: 'running',
            actions: [
              assign(({ context, event }) => ({
                startedAt: Date.now(),
                deadline: event.deadline ?? null,
                messages: event.context
                  ? [...context.messages, { role: 'user' as const, content: event.context }]
                  : context.messages,
              })),
              notify(({ context }) => ({
                type: 'agent.started',
                parentId: context.parentId,
                task: context.task,
              })),
            ],
          },
        },
      },
      running: {
        on: {
          THOUGHT: [
            ...route(
              'running',
              (args) => thinking(args) && thinkOutput(args.event).parse.ok,
              ({ context, event }) => {
                const output = thinkOutput(event)
                return {
                  ...countTurn(context, output),
                  messages: [...withInbox(context, output), output.assistant],
                  pending: (output.parse as { actions: Action[] }).actions,
                }
              },
            ),
            {
              guard: (args) => thinking(args) && args.context.repairs < services.maxRepairs(args.context),
              actions: [
                assign(({ context, event }) => ({
                  ...countTurn(context, event.output),
                  messages: [
                    ...withInbox(context, event.output),
                    event.output.assistant,
                    ...event.output.feedback,
                  ],
                  repairs: context.repairs + 1,
                })),
                notify(({ context, event }) => ({
                  type: 'agent.repair',
                  error: (thinkOutput(event).parse as { error: string }).error,
                  repairs: context.repairs,
                })),
              ],
            },
            {
              guard: thinking,
              target: '#agent.failed',
              actions: assign(({ context, event }) => ({
                ...countTurn(context, event.output),
                ...failure(new ParseError((event.output.parse as { error: string }).error)),
                messages: [...withInbox(context, event.output), event.output.assistant],
              })),
            },
          ],
          ACTED: [
            {
              guard: ({ context, event }) =>
                executing({ context, event }) &&
                event.output.refused !== undefined &&
                context.repairs < services.maxRepairs(context),
              actions: [
                assign(({ context, event }) => ({
                  messages: [
                    ...context.messages,
                    ...event.output.messages,
                    ...skipRest(context.pending.slice(1)),
                  ],
                  pending: [],
                  repairs: context.repairs + 1,
                  phase: 'thinking' as const,
                })),
                notify(({ context, event }) => ({
                  type: 'agent.repair',
                  error: actOutput(event).refused ?? '',
                  repairs: context.repairs,
                })),
              ],
            },
            {
              guard: ({ context, event }) =>
                executing({ context, event }) && event.output.refused !== undefined,
              target: '#agent.failed',
              actions: assign(({ event }) =>
                failure(new LimitExceededError('launch', event.output.refused ?? '')),
              ),
            },
            {
              guard: ({ context, event }) =>
                executing({ context, event }) && event.output.suspend !== undefined,
              target: '#agent.suspended.external',
              actions: assign(({ event }) => ({ awaiting: event.output.suspend ?? null })),
            },
            ...route('running', executing, ({ context, event }) => {
              const output = actOutput(event)
              return {
                messages:
                  output.messages.length > 0 ? [...context.messages, ...output.messages] : context.messages,
                children: appendChildren(context.children, output.children),
                pending: context.pending.slice(1),
                busyMs: context.busyMs + (output.durationMs ?? 0),
                // Repairs count unusable replies in a row: an action that went through ends the row.
                repairs: 0,
              }
            }),
          ],
          EFFECT_FAILED: {
            target: '#agent.failed',
            actions: assign(({ event }) => failure(event.error)),
          },
        },
      },
      suspended: {
        initial: 'children',
        states: {
          children: {
            entry: notify(({ context }) => ({ type: 'agent.suspended', waitingOn: context.waitingOn ?? [] })),
            on: {
              SETTLED: route(
                'suspended',
                always,
                ({ context, event }) => {
                  const { results, conflicts } = (event as unknown as Output<SettledGroup>).output
                  return {
                    messages: [
                      ...context.messages,
                      childResultsMessage(results, context.waitCallId, conflicts),
                    ],
                    conflicts:
                      conflicts.length > 0 ? [...context.conflicts, ...conflicts] : context.conflicts,
                    delivered: [...context.delivered, ...(context.waitingOn ?? [])],
                    waitingOn: null,
                    waitCallId: null,
                  }
                },
                notify(({ event }) => ({
                  type: 'agent.resumed',
                  settled: (event as unknown as Output<SettledGroup>).output.results.map((r) => r.id),
                })),
              ),
              EFFECT_FAILED: {
                target: '#agent.failed',
                actions: assign(({ event }) => failure(event.error)),
              },
            },
          },
          external: {
            entry: notify(({ context }) => ({
              type: 'agent.suspended',
              waitingOn: [],
              ...(context.awaiting && { awaiting: context.awaiting }),
            })),
            on: {
              APPROVE: {
                guard: ({ context, event }) => context.awaiting?.callId === event.callId,
                target: '#agent.running',
                actions: [
                  assign(({ context }) => ({
                    ...answer(context, { approved: true }),
                    phase: 'executing' as const,
                  })),
                  notify(() => ({ type: 'agent.resumed', settled: [] })),
                ],
              },
              RESUME: {
                target: '#agent.running',
                actions: [
                  assign(({ context, event }) => ({
                    ...answer(context, { payload: event.payload }),
                    phase: 'executing' as const,
                  })),
                  notify(() => ({ type: 'agent.resumed', settled: [] })),
                ],
              },
              REJECT: route(
                'suspended',
                ({ context, event }) => context.awaiting?.callId === (event as { callId?: string }).callId,
                ({ context, event }) => ({
                  messages: [
                    ...context.messages,
                    actionReply(
                      context.pending[0]!,
                      `rejected: ${(event as unknown as { reason: string }).reason}`,
                    ),
                  ],
                  pending: context.pending.slice(1),
                  awaiting: null,
                }),
                notify(() => ({ type: 'agent.resumed', settled: [] })),
              ),
            },
          },
        },
      },
      completed: {
        type: 'final',
        entry: notify(({ context }) => ({
          type: 'agent.completed',
          result: context.result,
          durationMs: (context.endedAt ?? Date.now()) - context.startedAt,
        })),
      },
      failed: {
        type: 'final',
        entry: notify(({ context }) => ({
          type: 'agent.failed',
          error: context.error ?? toErrorInfo(new Error('unknown failure')),
          durationMs: (context.endedAt ?? Date.now()) - context.startedAt,
        })),
      },
    },
  })
}

export type AgentMachine = ReturnType<typeof createAgentMachine>

/** The messages that arrived while the agent was busy, delivered into the turn that just ran. */
function withInbox(context: AgentContext, output: ThinkOutcome): ChatMessage[] {
  if (output.inboxConsumed === 0) return context.messages
  return [...context.messages, inboxMessage(context.inbox.slice(0, output.inboxConsumed))]
}

function failure(error: unknown): Partial<AgentContext> {
  return { error: toErrorInfo(error), endedAt: Date.now() }
}

function answer(context: AgentContext, value: AgentContext['answers'][string]): Partial<AgentContext> {
  const key = context.awaiting?.key
  if (key === undefined) return {}
  return { answers: { ...context.answers, [key]: value }, awaiting: null }
}

function countTurn(context: AgentContext, outcome: ThinkOutcome): Partial<AgentContext> {
  return {
    turn: context.turn + 1,
    inbox: outcome.inboxConsumed === 0 ? context.inbox : context.inbox.slice(outcome.inboxConsumed),
    busyMs: context.busyMs + outcome.durationMs,
    retries: context.retries + (outcome.retries ?? 0),
    processes: outcome.process ? [...context.processes, outcome.process] : context.processes,
    usage: {
      promptTokens: context.usage.promptTokens + (outcome.usage?.promptTokens ?? 0),
      completionTokens: context.usage.completionTokens + (outcome.usage?.completionTokens ?? 0),
      cost: context.usage.cost + (outcome.cost ?? 0),
    },
  }
}

/** The wait action leaves `pending`; with no ids it waits for every child not yet delivered. */
function waitFor(context: AgentContext): Partial<AgentContext> {
  const wait = context.pending[0] as Extract<Action, { action: 'wait_for_subagents' }>
  let ids = wait.ids
  if (!ids) {
    const delivered = new Set(context.delivered)
    ids = context.children.map((child) => child.localId).filter((id) => !delivered.has(id))
  }
  return { waitingOn: ids, waitCallId: wait.callId ?? null, pending: context.pending.slice(1), repairs: 0 }
}

function appendChildren(children: ChildLink[], added: ChildLink[] | undefined): ChildLink[] {
  return added && added.length > 0 ? [...children, ...added] : children
}

function skipRest(actions: Action[]): ChatMessage[] {
  return actions.flatMap((action) =>
    action.callId ? [actionReply(action, 'skipped: an earlier action in the same reply was refused')] : [],
  )
}
