import type { AgentContext } from '../agent/context.js'
import type { AgentDefinition } from '../agent/define-agent.js'
import type { EventBus } from '../events/event-bus.js'
import type { AgentEventInput } from '../events/types.js'
import type { ChatModel } from '../models/types.js'
import type { ActionOf } from '../protocol/actions.js'
import type { Redactor } from '../protocol/redact.js'
import type { Scheduler } from '../scheduler/scheduler.js'
import type { TokenBudget } from '../scheduler/token-budget.js'
import type { Workspaces } from '../workspaces/workspaces.js'
import type { AgentEntry } from './agent-entry.js'
import type { AgentKinds } from './agent-kinds.js'
import type { LaunchOutcome } from './launch.js'
import type { BusyTracker } from './metrics.js'

/** What the effects need of their run: the narrow side of the orchestrator they see. */
export interface EffectHost {
  readonly runId: string
  readonly registry: ReadonlyMap<string, AgentEntry>
  readonly bus: EventBus
  readonly scheduler: Scheduler
  readonly redact: Redactor
  readonly workspaces: Workspaces | undefined
  readonly busy: BusyTracker
  /** The tools and model functions of each kind of agent of the run. */
  readonly kinds: AgentKinds
  /** Tokens the run used (`maxRunTokens`), and those reserved by its calls in flight. */
  readonly budget: TokenBudget
  modelFor(definition: AgentDefinition): ChatModel
  /**
   * An event of the effect `signal` belongs to, told only while that effect runs: one stopped
   * before it ended (the agent settled or timed out, the run was cancelled or detached) tells
   * nobody, whatever its model or tool does after.
   */
  emitUnlessStopped(signal: AbortSignal, context: AgentContext, event: AgentEventInput): void
  launch(
    parent: AgentEntry,
    action: ActionOf<'launch_subagents'>,
    signal: AbortSignal,
  ): Promise<LaunchOutcome>
  deliverMessage(recipient: AgentEntry, from: string, text: string, id?: string): void
  /** The agent cannot go on here: it waits on agents that run in other processes (segments). */
  park(reason: 'children'): void
}
