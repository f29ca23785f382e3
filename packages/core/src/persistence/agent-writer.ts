import { StoreError } from '../errors.js'
import type { AgentRecord, RunId, RunStore } from './records.js'

/**
 * Writes started per turn of the event loop: a fan-out of 1,000 × 3 × 50 ms got 11-17 ms faster
 * (paired medians, 30 runs each), at 1 ms latency 35 ms; 4 or 16 made no difference.
 */
const drainChunk = 16

interface PendingWrite {
  agentId: string
  startedAt: number
  reject: (error: unknown) => void
}

/**
 * Writes each agent's record after it changes, one write in flight per agent: changes that
 * arrive during a write are folded into the next one, so a step costs one write of one agent
 * whatever the size of the run.
 */
export class AgentWriter<Agent extends { readonly id: string }> {
  private readonly inFlight = new Map<string, Promise<void>>()
  private readonly dirty = new Set<string>()
  /** Agents changed in this tick, written together once it ends. */
  private readonly queued = new Map<string, Agent>()
  /** Callers of `written`, by agent: told when the agent's write loop ends. */
  private readonly waiters = new Map<string, (() => void)[]>()
  private drainArmed = false
  /** Writes the store has not finished yet: one timer watches them all (a timer per write costs). */
  private readonly writes = new Set<PendingWrite>()
  private watchdog: NodeJS.Timeout | undefined
  private failure: unknown

  constructor(
    private readonly store: RunStore,
    private readonly runId: RunId,
    private readonly timeoutMs: number,
    private readonly onError: (error: unknown) => void,
    /** An agent's record as it is now: called when its write starts, so it sees the latest state. */
    private readonly toRecord: (agent: Agent) => AgentRecord,
  ) {}

  /** Asks for a write of `agent`, of its state when the write starts. */
  schedule(agent: Agent): void {
    const agentId = agent.id
    if (this.failure !== undefined) return
    if (this.inFlight.has(agentId)) {
      this.dirty.add(agentId)
      return
    }
    if (this.queued.has(agentId)) return
    this.queued.set(agentId, agent)
    // Transitions of the same tick (a step is several) fold into one write.
    this.armDrain()
  }

  /**
   * Writes the agent's latest state now, without waiting for the tick to end, and resolves once
   * it is stored (a parent relies on its children's records existing). Rejects with the
   * writer's failure, which has also gone to `onError`.
   */
  async writeNow(agent: Agent): Promise<void> {
    const agentId = agent.id
    this.queued.delete(agentId)
    let write = this.inFlight.get(agentId)
    if (write) {
      // The write in flight may predate the latest change: its loop writes once more.
      this.dirty.add(agentId)
    } else if (this.failure === undefined) {
      write = this.loop(agent)
      this.inFlight.set(agentId, write)
    }
    await write
    if (this.failure !== undefined) throw this.failure
  }

  /**
   * Resolves once the agent's latest scheduled state is stored (at once when nothing is queued or
   * in flight for it); rejects with the writer's failure. Unlike `writeNow`, it leaves the write
   * to the end of the tick, after the work the tick started (new children's first model calls).
   */
  async written(agentId: string): Promise<void> {
    if (this.queued.has(agentId) || this.inFlight.has(agentId)) {
      await new Promise<void>((resolve) => {
        const waiting = this.waiters.get(agentId)
        if (waiting) waiting.push(resolve)
        else this.waiters.set(agentId, [resolve])
      })
    }
    if (this.failure !== undefined) throw this.failure
  }

  /** Resolves when every scheduled write has finished; rejects with the first write error. */
  async flush(): Promise<void> {
    while (this.queued.size > 0 || this.inFlight.size > 0) {
      if (this.queued.size > 0) this.drain(Number.POSITIVE_INFINITY)
      await Promise.all(this.inFlight.values())
    }
    if (this.failure !== undefined) throw this.failure
  }

  /**
   * Starts the queued writes, `limit` at a time: the rest wait for the next turn of the event
   * loop, after the timers that came due meanwhile (model replies), so a long queue does not hold
   * up the replies behind it.
   */
  private drain(limit = drainChunk): void {
    this.drainArmed = false
    let started = 0
    for (const [agentId, agent] of this.queued) {
      if (started++ === limit) {
        this.armDrain()
        return
      }
      this.queued.delete(agentId)
      if (this.failure === undefined) this.inFlight.set(agentId, this.loop(agent))
      else this.wake(agentId)
    }
  }

  private armDrain(): void {
    if (this.drainArmed) return
    this.drainArmed = true
    setImmediate(() => this.drain())
  }

  private async loop(agent: Agent): Promise<void> {
    const agentId = agent.id
    try {
      do {
        this.dirty.delete(agentId)
        await this.save(this.toRecord(agent))
      } while (this.dirty.has(agentId) && this.failure === undefined)
    } catch (error) {
      if (this.failure === undefined) {
        this.failure = error
        this.onError(error)
      }
    } finally {
      this.inFlight.delete(agentId)
      this.wake(agentId)
    }
  }

  private wake(agentId: string): void {
    const waiting = this.waiters.get(agentId)
    if (!waiting) return
    this.waiters.delete(agentId)
    for (const resolve of waiting) resolve()
  }

  /** One write, bounded in time: a store that hangs must not hang the run silently. */
  private save(record: AgentRecord): Promise<void> {
    return new Promise((resolve, reject) => {
      const write: PendingWrite = { agentId: record.id, startedAt: performance.now(), reject }
      this.writes.add(write)
      this.watch()
      const failed = (error: unknown) => {
        this.writes.delete(write)
        this.release()
        reject(
          error instanceof StoreError
            ? error
            : new StoreError(
                `store write of agent ${record.id} (run ${this.runId}) failed: ${(error as Error)?.message ?? String(error)}`,
                { cause: error },
              ),
        )
      }
      try {
        this.store.saveAgent(this.runId, record).then(() => {
          this.writes.delete(write)
          this.release()
          resolve()
        }, failed)
      } catch (error) {
        failed(error)
      }
    })
  }

  private watch(): void {
    // Checked four times per timeout: a hung write is reported between 1 and 1.25 timeouts late.
    this.watchdog ??= setTimeout(() => this.check(), Math.max(1, this.timeoutMs / 4))
  }

  /**
   * No write pending: the watchdog goes. Left armed, it would hold the process open, and hold the
   * finished run (its writer, store and agents) in memory until it fired. One timer per batch of
   * writes, not per write.
   */
  private release(): void {
    if (this.writes.size > 0 || this.watchdog === undefined) return
    clearTimeout(this.watchdog)
    this.watchdog = undefined
  }

  private check(): void {
    this.watchdog = undefined
    const now = performance.now()
    for (const write of this.writes) {
      if (now - write.startedAt < this.timeoutMs) continue
      this.writes.delete(write)
      write.reject(
        new StoreError(
          `store write of agent ${write.agentId} (run ${this.runId}) did not finish within ${this.timeoutMs} ms`,
        ),
      )
    }
    if (this.writes.size > 0) this.watch()
  }
}
