import { readFileSync, readlinkSync } from 'node:fs'
import { hostname } from 'node:os'
import { nanoid } from 'nanoid'
import { callStore, RunBusyError } from '../errors.js'
import { noClaim, type RunClaim, type RunStore } from '../persistence/records.js'

/** How long a claim holds unless renewed: a process that died elsewhere frees its runs after this. */
export const claimMs = 30_000

/**
 * Where process ids mean the same: this machine, and on Linux its PID namespace (containers that
 * share a host name do not share their process ids).
 */
const here = `${hostname()}${pidNamespace()}`
/** The owners of the runtimes made in this process: one of its process id but not among them is a former process's. */
const ownersInThisProcess = new Set<string>()

/**
 * A runtime's claims on the runs it runs (`RunStore.claimRun`), renewed while it holds them, so
 * that a second process cannot resume, answer or cancel-by-resuming a run another one runs. A
 * claim held by a process of this machine that is gone (killed) is taken over at once.
 */
export class RunClaims {
  /** This runtime, as a claim names it: machine, process, and which runtime of the process. */
  readonly owner = `${here}:${process.pid}:${nanoid(6)}`
  /** Runs held: by how many holders of this runtime (a run, an answer being written), and until when. */
  private readonly held = new Map<string, { holders: number; until: number }>()
  private timer: NodeJS.Timeout | undefined
  private renewing = false

  constructor(
    private readonly store: RunStore,
    /** How long one claim or release may take (`storeTimeoutMs`). */
    private readonly timeoutMs: number,
    /** A run whose claim another process took (this one stalled past `claimMs`): it must stop. */
    private readonly lost: (runId: string, error: RunBusyError) => void,
  ) {
    ownersInThisProcess.add(this.owner)
  }

  /** Claims the run for this runtime, or throws `RUN_BUSY` naming the process that holds it. */
  async claim(runId: string): Promise<void> {
    const { store } = this
    if (!store.claimRun) return
    const request = () => ({ owner: this.owner, until: Date.now() + claimMs })
    const claim = (replacing?: string) =>
      callStore('claim', runId, this.timeoutMs, () =>
        store.claimRun!(runId, replacing === undefined ? request() : { ...request(), replacing }),
      )
    let holder = await claim()
    if (holder.owner !== this.owner && isGone(holder.owner)) holder = await claim(holder.owner)
    if (holder.owner !== this.owner) throw runBusy(runId, holder)
    this.lostTo.delete(runId)
    const held = this.held.get(runId)
    if (held) {
      held.holders++
      held.until = holder.until
    } else this.held.set(runId, { holders: 1, until: holder.until })
    this.timer ??= setInterval(() => void this.renew(), claimMs / 3).unref()
  }

  /**
   * This runtime runs nothing more (shut down): a claim of its left in the store (a release that
   * failed) is taken over at once by another runtime of the process, as a dead process's is.
   */
  close(): void {
    ownersInThisProcess.delete(this.owner)
    this.lostTo.clear()
  }

  /** Lets go of the run (it ended or was detached here). */
  async release(runId: string): Promise<void> {
    const held = this.held.get(runId)
    if (held === undefined) return
    if (held.holders > 1) return void held.holders--
    this.forget(runId)
    await this.releaseInStore(runId)
  }

  private async releaseInStore(runId: string): Promise<void> {
    const { store } = this
    if (store.releaseRun)
      await callStore('release', runId, this.timeoutMs, () => store.releaseRun!(runId, this.owner))
  }

  private forget(runId: string): void {
    this.held.delete(runId)
    if (this.held.size === 0) {
      clearInterval(this.timer)
      this.timer = undefined
    }
  }

  private async renew(): Promise<void> {
    // One round at a time: on a slow store, a round may take longer than the interval.
    if (this.renewing) return
    this.renewing = true
    try {
      for (const runId of [...this.held.keys()]) await this.renewOne(runId)
    } finally {
      this.renewing = false
    }
  }

  /**
   * Resolves at once while the run's claim holds; past its end (this process stalled, its event
   * loop blocked), only once a renewal says it still holds it. Rejects with `RUN_BUSY` when it
   * lost the run: nothing more of it may be written.
   */
  check(runId: string): Promise<void> | undefined {
    const held = this.held.get(runId)
    // Not held here: a run without claims (a store without them, a distributed segment).
    if (!held || held.until - claimMs / 3 > Date.now()) return undefined
    return this.renewOne(runId).then(() => {
      if (!this.held.has(runId)) throw this.lostTo.get(runId) ?? lostError(runId, noClaim)
    })
  }

  private async renewOne(runId: string): Promise<void> {
    let holder: RunClaim
    try {
      holder = await callStore('renewal of the claim', runId, this.timeoutMs, () =>
        this.store.claimRun!(runId, { owner: this.owner, until: Date.now() + claimMs, renewing: true }),
      )
    } catch {
      // A store that cannot answer now: the next round tries again, before the claim lapses.
      return
    }
    const held = this.held.get(runId)
    if (!held) {
      // Let go of while the renewal was under way: the renewal must not keep it.
      if (holder.owner === this.owner) await this.releaseInStore(runId).catch(() => {})
      return
    }
    if (holder.owner === this.owner) {
      held.until = holder.until
      return
    }
    this.forget(runId)
    const error = lostError(runId, holder)
    this.lostTo.set(runId, error)
    this.lost(runId, error)
  }

  /** Why each run lost to another process stops here (a write that comes after is told the same). */
  private readonly lostTo = new Map<string, RunBusyError>()
}

function lostError(runId: string, holder: RunClaim): RunBusyError {
  const by =
    holder.owner === '' ? 'another process, which has let go of it since,' : describeOwner(holder.owner)
  return new RunBusyError(
    `run ${runId} was taken over by ${by} while this process held it (its event loop stalled past the claim's ${claimMs} ms): it stops here, with what it stored`,
    holder.until,
  )
}

function runBusy(runId: string, holder: RunClaim): RunBusyError {
  const by = describeOwner(holder.owner)
  // Not the claim's expiry as a time: it is renewed while that process runs, so only its stop ends it.
  return new RunBusyError(
    `run ${runId} is running in ${by}: resume, answer or cancel it there (or through its server), or here once that process has stopped (its claim, renewed while it runs, lapses within ${claimMs / 1000} s of its stop)`,
    holder.until,
    { runId, holder: by },
  )
}

/** `place:pid:tag` → where, and its process id. */
function parseOwner(owner: string): { place: string; pid: number } | undefined {
  const match = /^(.*):(\d+):[^:]*$/.exec(owner)
  return match ? { place: match[1]!, pid: Number(match[2]) } : undefined
}

function describeOwner(owner: string): string {
  const parsed = parseOwner(owner)
  if (!parsed) return `"${owner}"`
  // Another runtime of this very process: naming the process would send the caller to itself.
  if (parsed.pid === process.pid && parsed.place === here)
    return `another runtime of this process (${parsed.pid})`
  return `process ${parsed.pid} on ${parsed.place.replace(/#.*$/, '')}`
}

/**
 * A claim of a process of this machine (and PID namespace) that no longer exists: killed, or the
 * process before a restart that kept its id (a container's process 1).
 */
function isGone(owner: string): boolean {
  const parsed = parseOwner(owner)
  if (!parsed || parsed.place !== here) return false
  if (parsed.pid === process.pid) return !ownersInThisProcess.has(owner)
  try {
    process.kill(parsed.pid, 0)
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'ESRCH'
  }
  // A signal reaches a zombie too: a process killed that its parent has not yet waited for.
  return isZombie(parsed.pid)
}

/** On Linux, a process that has ended and awaits its parent's wait (state Z, or X while it goes). */
function isZombie(pid: number): boolean {
  let stat: string
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  } catch {
    return false
  }
  // `pid (name) state …`: the name may hold spaces and parentheses, so the state follows the last ")".
  const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3)
  return state === 'Z' || state === 'X'
}

/** `#<id>` of this process's PID namespace on Linux; empty where there is none to read. */
function pidNamespace(): string {
  try {
    return `#${/\d+/.exec(readlinkSync('/proc/self/ns/pid'))?.[0] ?? ''}`
  } catch {
    return ''
  }
}
