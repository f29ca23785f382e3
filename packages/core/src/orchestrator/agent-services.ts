import type { ActOutcome, SettledGroup, ThinkOutcome } from '../agent/agent-loop.js'
import { type AgentContext, actionKey, type ChildResult } from '../agent/context.js'
import { CohortError } from '../errors.js'
import type { Action, ActionOf } from '../protocol/actions.js'
import { actionReply } from '../protocol/feedback.js'
import { promiseOf } from '../thenable.js'
import { type AgentEntry, childResult } from './agent-entry.js'
import type { EffectHost } from './effect-host.js'
import { think } from './model-call.js'
import { runTool } from './tool-call.js'

/**
 * The side effects of an agent's states, run by the orchestrator on its machine's behalf:
 * `running.thinking` → `think` (`model-call.ts`), `running.acting` → `act` (a tool,
 * `tool-call.ts`; a launch, `launch.ts`; a message), `suspended.children` → `awaitChildren`.
 * Each outcome is sent back to the agent's actor as an event.
 */
export interface AgentServices {
  think(entry: AgentEntry, signal: AbortSignal): Promise<ThinkOutcome>
  act(entry: AgentEntry, action: Action, signal: AbortSignal): Promise<ActOutcome>
  awaitChildren(entry: AgentEntry, ids: string[], signal: AbortSignal): Promise<SettledGroup>
}

/** The side effects of agents, bound to their run. */
export function createAgentServices(run: EffectHost): AgentServices {
  const workspaces = run.workspaces

  return {
    think: (entry, signal) => think(run, entry, signal),

    act(entry, action, signal) {
      const { context } = entry
      switch (action.action) {
        case 'launch_subagents':
          return launch(entry, action, signal)
        case 'call_tool':
          return runTool(run, entry, action, signal)
        case 'send_message':
          return promiseOf(() => ({
            messages: [actionReply(action, sendMessage(entry, context, action))],
          }))
        default:
          return Promise.reject(
            new CohortError('UNEXPECTED_ACTION', `action ${action.action} is not executed as a step`),
          )
      }
    },

    awaitChildren(entry, localIds, signal) {
      const { context } = entry
      const byLocalId = new Map(context.children.map((child) => [child.localId, child]))
      const childOf = (localId: string) => {
        const link = byLocalId.get(localId)
        return link && run.registry.get(link.id)
      }
      const settled = new Promise<ChildResult[]>((resolve, reject) => {
        let remaining = 0
        const collect = () =>
          localIds.map((localId): ChildResult => {
            const child = childOf(localId)
            if (!child) {
              const error = {
                name: 'Error',
                code: 'MISSING_AGENT',
                message: `no record of sub-agent ${localId}`,
              }
              return {
                id: localId,
                agent: byLocalId.get(localId)?.agent ?? 'unknown',
                status: 'failed',
                error,
              }
            }
            return childResult(child, localId)
          })
        const aborted = () => reject(signal.reason)
        const done = () => {
          signal.removeEventListener('abort', aborted)
          resolve(collect())
        }
        const wake = () => {
          if (--remaining === 0 && !signal.aborted) done()
        }
        let elsewhere = false
        for (const localId of localIds) {
          const child = childOf(localId)
          if (child && !child.settled) {
            remaining++
            child.onSettle.push(wake)
            if (child.mode === 'remote') elsewhere = true
          }
        }
        // In a segment, children run in other workers: this agent parks until they are done.
        if (elsewhere) run.park('children')
        if (signal.aborted) return reject(signal.reason)
        signal.addEventListener('abort', aborted)
        if (remaining === 0) done()
      })
      return settled.then(async (results) => {
        if (!workspaces) return { results, conflicts: [] }
        const waited = new Set(localIds.map((localId) => byLocalId.get(localId)?.id))
        // Children whose results an earlier wait gave count too: a parent that waits for one child
        // at a time is told, once, of a file two of them changed, at the wait for the second.
        const delivered = new Set(context.delivered)
        const ids = context.children
          .filter((child) => waited.has(child.id) || delivered.has(child.localId))
          .map((child) => child.id)
        if (ids.length < 2) return { results, conflicts: [] }
        // Every child here has ended: what their workspaces changed is read once for the run.
        const conflicts = (await workspaces.conflicts(run.runId, ids, new Set(ids))).filter((conflict) =>
          conflict.agents.some((id) => waited.has(id)),
        )
        if (conflicts.length > 0)
          run.emitUnlessStopped(signal, context, { type: 'workspace.conflicts', conflicts })
        return { results, conflicts }
      })
    },
  }

  async function launch(
    entry: AgentEntry,
    action: ActionOf<'launch_subagents'>,
    signal: AbortSignal,
  ): Promise<ActOutcome> {
    const outcome = await run.launch(entry, action, signal)
    if (!outcome.ok) {
      const refused: ActOutcome = { messages: [actionReply(action, outcome.reason)], refused: outcome.reason }
      if (outcome.limit !== undefined) refused.refusedBy = outcome.limit
      return refused
    }
    const ids = outcome.children.map((child) => child.localId)
    return {
      messages: [actionReply(action, `launched: ${ids.join(', ')}`)],
      children: outcome.children,
    }
  }

  function sendMessage(entry: AgentEntry, context: AgentContext, action: ActionOf<'send_message'>): string {
    const { to, text } = action
    const candidates =
      to === 'parent'
        ? [context.parentId]
        : [`${entry.id}.${to}`, context.parentId === null ? null : `${context.parentId}.${to}`, to]
    const recipient = candidates.map((id) => (id === null ? undefined : run.registry.get(id))).find(Boolean)
    if (!recipient) return `error: no agent "${to}" to send to; use "parent", a child id or a sibling id`
    if (recipient.settled) return `error: agent "${to}" has already finished`
    // Named by the sender's action: the same send run again after a crash is recognised by its recipient.
    run.deliverMessage(recipient, entry.id, text, `${entry.id}#${actionKey(context, action)}`)
    return `sent to ${recipient.id}`
  }
}
