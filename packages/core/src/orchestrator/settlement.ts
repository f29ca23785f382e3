import type { AgentMachineEvent } from '../agent/agent-machine.js'
import { type AgentContext, awaitedAgents, type ChildResult } from '../agent/context.js'
import { CancelledError, CohortError, type ErrorInfo, fromErrorInfo, TimeoutError } from '../errors.js'
import type { AgentEventInput } from '../events/types.js'
import { renderResults } from '../protocol/feedback.js'
import { type AgentEntry, childResult } from './agent-entry.js'

/** What settlement needs of its run. */
export interface SettlementHost {
  readonly registry: ReadonlyMap<string, AgentEntry>
  runEnded: Promise<void> | undefined
  send(entry: AgentEntry, event: AgentMachineEvent): void
  failAgent(entry: AgentEntry, error: unknown): void
  stopEffect(entry: AgentEntry, reason?: () => unknown): void
  park(reason: 'dependencies'): void
  endRun(root: AgentEntry): Promise<void>
  emitAgent(context: AgentContext, event: AgentEventInput): void
}

/**
 * What happens around an agent's start and end: it starts once its dependencies completed (with
 * their results), it fails at its deadline, and when it settles its waiting parent and its
 * dependents are told, its unsettled children are ended, and the root's end ends the run.
 */
export class Settlement {
  constructor(private readonly run: SettlementHost) {}

  /**
   * Starts an idle agent once the agents it waits for are settled, handing it the results of those
   * it depends on (not of the one it only runs after).
   */
  startWhenReady(entry: AgentEntry): void {
    const { context } = entry
    const pending = awaitedAgents(context)
      .map((id) => this.run.registry.get(id))
      .filter((dependency): dependency is AgentEntry => dependency !== undefined && !dependency.settled)
    if (pending.length > 0) {
      if (pending.some((dependency) => dependency.mode === 'remote')) {
        this.run.park('dependencies')
        return
      }
      for (const dependency of pending) dependency.dependents.push(entry)
      return
    }
    const results = context.dependsOn.map((id) => this.outcome(id))
    const before = context.runsAfter.map((id) => this.outcome(id))
    const failed = [...results, ...before].find((result) => result.status === 'failed')
    if (failed) {
      const which = before.includes(failed) ? `"${failed.id}", run before it,` : `dependency "${failed.id}"`
      const error = new CohortError('DEPENDENCY_FAILED', `${which} failed: ${failed.error?.message}`)
      this.run.failAgent(entry, error)
      return
    }
    const { timeoutMs } = context
    const deadline = timeoutMs === null ? null : Date.now() + timeoutMs
    const note =
      results.length > 0 ? `Results of the agents you depend on: ${renderResults(results)}` : undefined
    this.run.send(entry, { type: 'START', deadline, ...(note !== undefined && { note }) })
    if (deadline !== null) this.armTimeout(entry, deadline)
  }

  /** A settled agent's result, as the agents waiting for it see it. */
  private outcome(id: string): ChildResult {
    const dependency = this.run.registry.get(id)
    const localId = id.slice(id.lastIndexOf('.') + 1)
    if (!dependency) return { id: localId, agent: 'unknown', status: 'failed', error: missing(id) }
    return childResult(dependency, localId)
  }

  armTimeout(entry: AgentEntry, deadline: number): void {
    clearTimeout(entry.timer)
    const { timeoutMs } = entry.context
    entry.timer = setTimeout(
      () => this.run.failAgent(entry, new TimeoutError(`agent ${entry.id} timed out after ${timeoutMs} ms`)),
      Math.max(0, deadline - Date.now()),
    )
  }

  /** The agent reached `completed` or `failed` (and, with `sync` durability, is stored so). */
  settle(entry: AgentEntry): void {
    const { error } = entry.context
    this.run.stopEffect(entry, () => (error ? fromErrorInfo(error) : new CancelledError('settled')))
    clearTimeout(entry.timer)
    this.cancelOrphans(entry)
    const waiters = entry.onSettle
    entry.onSettle = []
    for (const wake of waiters) wake()
    const dependents = entry.dependents
    entry.dependents = []
    for (const dependent of dependents) if (dependent.status === 'idle') this.startWhenReady(dependent)
    if (entry.parentId === null) this.run.runEnded = this.run.endRun(entry)
  }

  /**
   * Restored agents whose parent is stored as ended: its end was stored before theirs, or it ended
   * during a launch its record never got to list. They end before anything of them runs again.
   */
  endOrphans(entries: readonly AgentEntry[]): void {
    for (const entry of entries) {
      const parent = entry.parentId === null ? undefined : this.run.registry.get(entry.parentId)
      if (!entry.settled && parent?.settled) this.run.failAgent(entry, orphaned(parent.id))
    }
  }

  /**
   * A settled agent's unsettled children can never hand their results to it: end them. A parent
   * that completed without waiting for them is told of with a warning: their work is lost.
   */
  private cancelOrphans(entry: AgentEntry): void {
    const ended: string[] = []
    for (const link of entry.context.children) {
      const child = this.run.registry.get(link.id)
      if (!child || child.settled) continue
      ended.push(link.localId)
      this.run.failAgent(child, orphaned(entry.id))
    }
    if (ended.length > 0 && entry.status === 'completed') {
      const message = `finished while sub-agents still ran (${ended.join(', ')}): they are cancelled, their results lost`
      this.run.emitAgent(entry.context, { type: 'agent.warning', message })
    }
  }
}

/** Why an agent whose parent ended is ended too. */
export function orphaned(parentId: string): CancelledError {
  return new CancelledError(`parent ${parentId} has ended`)
}

function missing(id: string): ErrorInfo {
  return { name: 'Error', code: 'MISSING_AGENT', message: `no record of agent ${id}` }
}
