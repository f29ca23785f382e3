import { InvalidInputError } from '../errors.js'
import type { AgentEntry } from './agent-entry.js'
import type { Orchestrator } from './orchestrator.js'

/** Continues agents suspended for the outside world, and delivers messages from outside. */
export class RunControl {
  constructor(private readonly run: Orchestrator) {}

  approve(callId: string): void {
    this.awaitingCall(callId, 'approval').actor.send({ type: 'APPROVE', callId })
  }

  reject(callId: string, reason: string): void {
    this.awaitingCall(callId, 'approval').actor.send({ type: 'REJECT', callId, reason })
  }

  /** Gives a suspended agent what it asked for (`ctx.suspend`), or approves its pending call. */
  resume(agentId: string, payload: unknown): void {
    const entry = this.live(agentId)
    const { awaiting } = entry.actor.getSnapshot().context
    if (!awaiting) {
      throw new InvalidInputError(
        `agent ${agentId} is not waiting for input or approval (it is ${this.state(entry)})`,
      )
    }
    if (awaiting.kind === 'approval') entry.actor.send({ type: 'APPROVE', callId: awaiting.callId })
    else entry.actor.send({ type: 'RESUME', payload: this.run.config.redact(payload) })
  }

  /** Delivers `text` into the agent's next model turn. */
  send(agentId: string, text: string, from = 'user'): void {
    if (typeof text !== 'string' || text.trim() === '')
      throw new InvalidInputError('message text must be a non-empty string')
    const entry = this.live(agentId)
    const clean = this.run.config.redact(text)
    entry.actor.send({ type: 'MESSAGE', from, text: clean })
    this.run.emitAgent(entry.actor.getSnapshot().context, { type: 'agent.message', from, text: clean })
  }

  private live(agentId: string): AgentEntry {
    const entry = this.run.registry.get(agentId)
    if (!entry) throw new InvalidInputError(`run ${this.run.runId} has no agent "${agentId}"`)
    if (entry.settled) throw new InvalidInputError(`agent ${agentId} has already ${this.state(entry)}`)
    return entry
  }

  private awaitingCall(callId: string, kind: 'approval'): AgentEntry {
    for (const entry of this.run.registry.values()) {
      const awaiting = entry.settled ? null : entry.actor.getSnapshot().context.awaiting
      if (awaiting?.callId === callId && awaiting.kind === kind) return entry
    }
    throw new InvalidInputError(
      `no agent of run ${this.run.runId} is waiting for approval of call "${callId}"`,
    )
  }

  private state(entry: AgentEntry): string {
    const value = entry.actor.getSnapshot().value
    return typeof value === 'string' ? value : Object.keys(value)[0]!
  }
}
