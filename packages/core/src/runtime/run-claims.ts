import { hostname } from 'node:os'
import { nanoid } from 'nanoid'
import { CohortError } from '../errors.js'
import type { RunClaim, RunStore } from '../persistence/records.js'

/** How long a claim holds unless renewed: a process that died elsewhere frees its runs after this. */
export const claimMs = 30_000

/**
 * A runtime's claims on the runs it runs (`RunStore.claimRun`), renewed while it holds them, so
 * that a second process cannot resume, answer or cancel-by-resuming a run another one runs. A
 * claim held by a process of this machine that is gone (killed) is taken over at once.
 */
export class RunClaims {
  /** This runtime, as a claim names it: machine, process, and which runtime of the process. */
  readonly owner = `${hostname()}:${process.pid}:${nanoid(6)}`
  /** Runs held, and by how many holders of this runtime (a run, an answer being written). */
  private readonly held = new Map<string, number>()
  private timer: NodeJS.Timeout | undefined

  constructor(
    private readonly store: RunStore,
    /** A run whose claim another process took (this one stalled past `claimMs`): it must stop. */
    private readonly lost: (runId: string, error: CohortError) => void,
  ) {}

  /** Claims the run for this runtime, or throws `RUN_BUSY` naming the process that holds it. */
  async claim(runId: string): Promise<void> {
    const { store } = this
    if (!store.claimRun) return
    const request = () => ({ owner: this.owner, until: Date.now() + claimMs })
    let holder = await store.claimRun(runId, request())
    if (holder.owner !== this.owner && isGoneHere(holder.owner))
      holder = await store.claimRun(runId, { ...request(), replacing: holder.owner })
    if (holder.owner !== this.owner) throw runBusy(runId, holder)
    this.held.set(runId, (this.held.get(runId) ?? 0) + 1)
    this.timer ??= setInterval(() => void this.renew(), claimMs / 3).unref()
  }

  /** Lets go of the run (it ended or was detached here). */
  async release(runId: string): Promise<void> {
    const holders = this.held.get(runId)
    if (holders === undefined) return
    if (holders > 1) return void this.held.set(runId, holders - 1)
    this.held.delete(runId)
    if (this.held.size === 0) {
      clearInterval(this.timer)
      this.timer = undefined
    }
    await this.store.releaseRun?.(runId, this.owner)
  }

  private async renew(): Promise<void> {
    for (const runId of [...this.held.keys()]) {
      try {
        const holder = await this.store.claimRun!(runId, { owner: this.owner, until: Date.now() + claimMs })
        if (holder.owner !== this.owner && this.held.delete(runId)) {
          this.lost(
            runId,
            new CohortError(
              'RUN_BUSY',
              `run ${runId} was taken over by ${describeOwner(holder.owner)} while this process held it: it stops here, with what it stored`,
            ),
          )
        }
      } catch {
        // A store that cannot answer now: the next tick tries again, before the claim lapses.
      }
    }
  }
}

function runBusy(runId: string, holder: RunClaim): CohortError {
  return new CohortError(
    'RUN_BUSY',
    `run ${runId} is running in ${describeOwner(holder.owner)}: resume, answer or cancel it there (or through its server), or once that process has stopped (its claim lapses at ${new Date(holder.until).toISOString()})`,
  )
}

/** `host:pid:tag` → its host and process id. */
function parseOwner(owner: string): { host: string; pid: number } | undefined {
  const match = /^(.*):(\d+):[^:]*$/.exec(owner)
  return match ? { host: match[1]!, pid: Number(match[2]) } : undefined
}

function describeOwner(owner: string): string {
  const parsed = parseOwner(owner)
  return parsed ? `process ${parsed.pid} on ${parsed.host}` : `"${owner}"`
}

/** A claim of a process of this machine that no longer exists (killed, crashed). */
function isGoneHere(owner: string): boolean {
  const parsed = parseOwner(owner)
  if (!parsed || parsed.host !== hostname() || parsed.pid === process.pid) return false
  try {
    process.kill(parsed.pid, 0)
    return false
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'ESRCH'
  }
}
