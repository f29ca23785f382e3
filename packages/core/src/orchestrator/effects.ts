import type { AgentMachineEvent } from '../agent/agent-machine.js'
import { CancelledError } from '../errors.js'
import type { AgentSlots } from '../scheduler/agent-slots.js'
import type { AgentEntry } from './agent-entry.js'
import type { AgentServices } from './agent-services.js'

/** Where an effect's outcome goes: back to the agent's actor, or its failure. */
export interface EffectTarget {
  send(entry: AgentEntry, event: AgentMachineEvent): void
  failAgent(entry: AgentEntry, error: unknown): void
  /** The agent waits for a place (`maxConcurrentAgents`): its timeout's clock stops. */
  stopClock(entry: AgentEntry): void
  /** It has its place after `waitedMs`: its deadline moves that much later, and its clock goes on. */
  restartClock(entry: AgentEntry, waitedMs: number): void
  /** False once the run is stopping (cancelled, detached, ended): no new work may start. */
  readonly open: boolean
}

/**
 * Runs the effect an agent's state calls for, at most one an agent at a time, and sends its
 * outcome back as an event: `running.thinking` → a model call, `running.acting` → its next
 * action, `suspended.children` → waiting for them. An effect stopped before it ended (the
 * agent settled, timed out, was detached) tells nobody.
 */
export class Effects {
  /** Effects started so far: each gets the next number as its token. */
  private started = 0

  constructor(
    private readonly services: AgentServices,
    private readonly target: EffectTarget,
    /** Places for agents at work (`maxConcurrentAgents`): a model call or a tool call takes one here. */
    private readonly slots?: AgentSlots,
  ) {}

  run(entry: AgentEntry): void {
    if (entry.effect !== 0 || entry.mode !== 'local') return
    const snapshot = entry.actor.getSnapshot()
    if (snapshot.status !== 'active') return
    const { context } = snapshot
    const maxRepairs = entry.limits.maxRepairs
    const controller = new AbortController()
    const { signal } = controller
    let outcome: Promise<AgentMachineEvent>
    if (snapshot.matches({ running: 'thinking' })) {
      // The place first: a slot, a rate-limit request or tokens taken while queued for one would be
      // counted for a call that is not made (and could be made later, in a burst over the limit).
      outcome = this.atWork(entry, signal, () => this.services.think(entry, signal)).then((reply) => ({
        type: 'REPLIED',
        outcome: reply,
        maxRepairs,
      }))
    } else if (snapshot.matches({ running: 'acting' }) && context.pending[0]) {
      const action = context.pending[0]
      const act = () => this.services.act(entry, action, signal)
      outcome = (action.action === 'call_tool' ? this.atWork(entry, signal, act) : act()).then((acted) => ({
        type: 'ACTED',
        outcome: acted,
        maxRepairs,
      }))
    } else if (snapshot.matches({ suspended: 'children' })) {
      outcome = this.services
        .awaitChildren(entry, context.waitingOn ?? [], signal)
        .then((group) => ({ type: 'CHILDREN_SETTLED', group }))
    } else return
    const token = ++this.started
    entry.effect = token
    entry.controller = controller
    outcome.then(
      (event) => {
        if (entry.effect !== token) return
        entry.effect = 0
        entry.controller = undefined
        entry.busySince = undefined
        this.target.send(entry, event)
      },
      (error: unknown) => {
        if (entry.effect !== token) return
        entry.effect = 0
        entry.controller = undefined
        this.target.failAgent(entry, error)
        entry.busySince = undefined
      },
    )
  }

  /**
   * `work` as soon as the agent may be at work: at once, unless `maxConcurrentAgents` makes it wait
   * its turn. A timeout counts the time an agent works, not the time it waits for a place (with
   * `--max-parallel 2 --timeout 90s`, the tenth task would time out before it started).
   */
  private atWork<T>(entry: AgentEntry, signal: AbortSignal, work: () => Promise<T>): Promise<T> {
    if (!this.slots) return work()
    let queuedAt: number | undefined
    const queued = () => {
      queuedAt = Date.now()
      this.target.stopClock(entry)
    }
    const granted = () => {
      // A place freed by a stopping run's agent is not work for another of its agents: a tool
      // started now would run in a detached run, and again after its resume.
      if (!this.target.open || entry.settled) return Promise.reject(new CancelledError('the run is stopping'))
      if (queuedAt !== undefined) this.target.restartClock(entry, Date.now() - queuedAt)
      return work()
    }
    return this.slots.run(entry.context.priority, signal, granted, queued)
  }

  /** Aborts the agent's running effect with `reason` (cancel, timeout, a segment's end). */
  stop(entry: AgentEntry, reason: () => unknown = () => new CancelledError('stopped')): void {
    // Made only when an effect runs: an error's stack costs more than the rest of a settlement.
    if (entry.effect !== 0) entry.controller?.abort(reason())
    entry.effect = 0
    entry.controller = undefined
    entry.busySince = undefined
  }
}
