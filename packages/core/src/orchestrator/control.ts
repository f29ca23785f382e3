import { InvalidInputError } from '../errors.js'
import type { AgentEntry } from './agent-entry.js'
import type { Orchestrator } from './orchestrator.js'

/** Continues agents suspended for the outside world, and delivers messages from outside. */
export class RunControl {
  constructor(private readonly run: Orchestrator) {}

  approve(callId: string): void {
    const entry = this.awaitingCall(callId, 'approval')
    this.run.send(entry, { type: 'ANSWERED', answer: { approved: true } })
  }

  reject(callId: string, reason: string): void {
    const entry = this.awaitingCall(callId, 'approval')
    this.run.send(entry, { type: 'REJECTED', reason })
  }

  /** Gives a suspended agent what it asked for (`ctx.suspend`), or approves its pending call. */
  resume(agentId: string, payload: unknown): void {
    const entry = this.live(agentId)
    const { awaiting } = entry.context
    if (!awaiting || !entry.snapshot.matches({ suspended: 'external' })) {
      throw new InvalidInputError(
        `agent ${agentId} is not waiting for input or approval (it is ${this.state(entry)})`,
      )
    }
    const answer =
      awaiting.kind === 'approval' ? { approved: true as const } : { payload: this.run.redact(payload) }
    this.run.send(entry, { type: 'ANSWERED', answer })
  }

  /** Delivers `text` into the agent's next model turn. */
  send(agentId: string, text: string, from = 'user'): void {
    if (typeof text !== 'string' || text.trim() === '')
      throw new InvalidInputError('message text must be a non-empty string')
    const entry = this.live(agentId)
    this.run.deliverMessage(entry, from, this.run.redact(text))
  }

  private live(agentId: string): AgentEntry {
    const entry = this.run.registry.get(agentId)
    if (!entry) throw new InvalidInputError(`run ${this.run.runId} has no agent "${agentId}"`)
    if (entry.settled) throw new InvalidInputError(`agent ${agentId} has already ${this.state(entry)}`)
    return entry
  }

  private awaitingCall(callId: string, kind: 'approval'): AgentEntry {
    for (const entry of this.run.registry.values()) {
      const awaiting = entry.snapshot.matches({ suspended: 'external' }) ? entry.context.awaiting : null
      if (awaiting?.callId === callId && awaiting.kind === kind) return entry
    }
    throw new InvalidInputError(
      `no agent of run ${this.run.runId} is waiting for approval of call "${callId}"`,
    )
  }

  private state(entry: AgentEntry): string {
    return entry.status
  }
}
