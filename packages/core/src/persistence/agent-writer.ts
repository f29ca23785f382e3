import { StoreError } from '../errors.js'
import type { AgentRecord, RunId, RunStore } from './records.js'

/**
 * Writes each agent's record after it changes, one write in flight per agent: changes that
 * arrive during a write are folded into the next one, so a step costs one write of one agent
 * whatever the size of the run.
 */
export class AgentWriter {
  private readonly inFlight = new Map<string, Promise<void>>()
  private readonly dirty = new Set<string>()
  private failure: unknown

  constructor(
    private readonly store: RunStore,
    private readonly runId: RunId,
    private readonly timeoutMs: number,
    private readonly onError: (error: unknown) => void,
  ) {}

  /** Asks for a write of `agentId`; `record` is called when the write starts, so it sees the latest state. */
  schedule(agentId: string, record: () => AgentRecord): void {
    if (this.failure !== undefined) return
    if (this.inFlight.has(agentId)) {
      this.dirty.add(agentId)
      return
    }
    const write = this.loop(agentId, record)
    this.inFlight.set(agentId, write)
  }

  /** Writes now and waits for it (used before a parent may rely on a child's record existing). */
  async writeNow(agentId: string, record: () => AgentRecord): Promise<void> {
    await this.inFlight.get(agentId)
    await this.save(record())
  }

  /** Resolves when every scheduled write has finished; rejects with the first write error. */
  async flush(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.all(this.inFlight.values())
    if (this.failure !== undefined) throw this.failure
  }

  /** One write, bounded in time: a store that hangs must not hang the run silently. */
  private async save(record: AgentRecord): Promise<void> {
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new StoreError(
              `store write of agent ${record.id} (run ${this.runId}) did not finish within ${this.timeoutMs} ms`,
            ),
          ),
        this.timeoutMs,
      )
    })
    try {
      await Promise.race([this.store.saveAgent(this.runId, record), timeout])
    } catch (error) {
      throw error instanceof StoreError
        ? error
        : new StoreError(
            `store write of agent ${record.id} (run ${this.runId}) failed: ${(error as Error).message}`,
            {
              cause: error,
            },
          )
    } finally {
      clearTimeout(timer)
    }
  }

  private async loop(agentId: string, record: () => AgentRecord): Promise<void> {
    // Transitions of the same tick (a step is several) fold into one write.
    await new Promise((resolve) => setImmediate(resolve))
    try {
      do {
        this.dirty.delete(agentId)
        await this.save(record())
      } while (this.dirty.has(agentId) && this.failure === undefined)
    } catch (error) {
      if (this.failure === undefined) {
        this.failure = error
        this.onError(error)
      }
    } finally {
      this.inFlight.delete(agentId)
    }
  }
}
