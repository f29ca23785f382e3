import { alreadyEnded, InvalidInputError } from '../errors.js'
import { assertStorable } from '../persistence/codec.js'
import type { AgentEntry } from './agent-entry.js'
import type { Orchestrator } from './orchestrator.js'

/** Continues agents suspended for the outside world, and delivers messages from outside. */
export class RunControl {
  constructor(private readonly run: Orchestrator) {}

  /**
   * Named by agent and call: a native call id is unique only within one reply (OpenAI-compatible
   * servers give `call_0` to many agents), so a call id alone could answer the wrong agent.
   */
  approve(agentId: string, callId: string): Promise<void> {
    const entry = this.awaitingApproval(agentId, callId)
    this.run.send(entry, { type: 'ANSWERED', answer: { approved: true } })
    return this.stored(entry)
  }

  reject(agentId: string, callId: string, reason: string): Promise<void> {
    const entry = this.awaitingApproval(agentId, callId)
    this.run.send(entry, { type: 'REJECTED', reason })
    return this.stored(entry)
  }

  /** Gives a suspended agent what it asked for (`ctx.suspend`), or approves its pending call. */
  resume(agentId: string, payload: unknown): Promise<void> {
    const entry = this.live(agentId)
    const { awaiting } = entry.context
    if (!awaiting || !entry.snapshot.matches({ suspended: 'external' })) {
      throw new InvalidInputError(
        `agent ${agentId} is not waiting for input or approval (${this.state(entry)})`,
      )
    }
    if (awaiting.kind === 'input') assertStorable(payload, `the answer to agent ${agentId}`)
    // No payload is null: a record keeps no undefined, and the answer must read back as it was given.
    const given = payload === undefined ? null : payload
    const answer =
      awaiting.kind === 'approval' ? { approved: true as const } : { payload: this.run.redact(given) }
    this.run.send(entry, { type: 'ANSWERED', answer })
    return this.stored(entry)
  }

  /**
   * Delivers `text` into the agent's next model turn; resolves once the agent's record holding it is
   * stored: until then a crash loses it. A message the agent cannot take is refused at once (throws).
   */
  send(agentId: string, text: string, from = 'user'): Promise<void> {
    if (typeof text !== 'string' || text.trim() === '')
      throw new InvalidInputError('message text must be a non-empty string')
    const entry = this.live(agentId)
    this.run.deliverMessage(entry, from, this.run.redact(text))
    return this.stored(entry)
  }

  /**
   * Resolves once what the agent was told is stored: until then a crash loses it. These calls
   * returned nothing before: a caller that does not wait learns of a store failure from the run's
   * end (it fails with it), not from an unhandled rejection that stops the process.
   */
  private stored(entry: AgentEntry): Promise<void> {
    const stored = this.run.writer.written(entry)
    stored.catch(() => {})
    return stored
  }

  private live(agentId: string): AgentEntry {
    const entry = this.run.registry.get(agentId)
    // Ids from outside (a server's URL or body) are quoted by their start: a long one is not sent back whole.
    if (!entry)
      throw new InvalidInputError(`run ${this.run.runId} has no agent "${String(agentId).slice(0, 80)}"`)
    // A cancelled run's agents end as failed: the run's status says why.
    const ended = this.run.isSettled ? this.run.record?.status : undefined
    if (ended) throw new InvalidInputError(alreadyEnded(`run ${this.run.runId}`, ended))
    if (entry.settled) throw new InvalidInputError(alreadyEnded(`agent ${agentId}`, entry.status))
    // Let go of here (the run was detached): what it is told would be lost, not stored.
    if (entry.mode === 'released') {
      throw new InvalidInputError(
        `run ${this.run.runId} was detached in this process: resume it (runtime.resume) to reach agent ${agentId}`,
      )
    }
    return entry
  }

  private awaitingApproval(agentId: string, callId: string): AgentEntry {
    requireId('agentId', agentId)
    requireId('callId', callId)
    const entry = this.live(agentId)
    const awaiting = entry.snapshot.matches({ suspended: 'external' }) ? entry.context.awaiting : null
    if (awaiting?.kind !== 'approval' || awaiting.callId !== callId) {
      const waitsOn = awaiting
        ? `it waits for ${awaiting.kind} of call "${awaiting.callId}"`
        : this.state(entry)
      throw new InvalidInputError(
        `agent ${agentId} of run ${this.run.runId} is not waiting for approval of call "${callId.slice(0, 80)}" (${waitsOn})`,
      )
    }
    return entry
  }

  /** What the agent does now, as a person answering it reads it: "suspended" alone reads as "waits for you". */
  private state(entry: AgentEntry): string {
    if (entry.snapshot.matches({ suspended: 'children' })) return 'it waits for its sub-agents'
    if (entry.status === 'idle') return 'it has not started'
    return `it is ${entry.status}`
  }
}

// A caller from JavaScript may still pass only a call id, as approve did before it named the agent.
function requireId(name: string, value: unknown): void {
  if (typeof value === 'string' && value !== '') return
  throw new InvalidInputError(
    `${name} must be a non-empty string, got ${String(JSON.stringify(value))}: approve and reject take (agentId, callId)`,
  )
}
