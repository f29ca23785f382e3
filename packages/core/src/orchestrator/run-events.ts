import type { AgentContext } from '../agent/context.js'
import type { EventBus } from '../events/event-bus.js'
import type { AgentEventInput, RunEventInput } from '../events/types.js'

/**
 * A run's events, stamped with the run, the agent, the time and the ms since the run started
 * here. Nothing is built when nobody listens: most runs have no listener, and a step is short.
 */
export class RunEvents {
  private readonly clockStart = performance.now()

  constructor(
    private readonly bus: EventBus,
    private readonly runId: string,
  ) {}

  agent(context: AgentContext, event: AgentEventInput): void {
    if (!this.bus.hasListeners) return
    this.bus.emit({
      ...event,
      runId: this.runId,
      agentId: context.agentId,
      agentName: context.name,
      depth: context.depth,
      at: Date.now(),
      elapsedMs: this.elapsedMs(),
    } as never)
  }

  run(event: RunEventInput): void {
    if (!this.bus.hasListeners) return
    this.bus.emit({ ...event, runId: this.runId, at: Date.now(), elapsedMs: this.elapsedMs() } as never)
  }

  private elapsedMs(): number {
    return Math.round(performance.now() - this.clockStart)
  }
}
