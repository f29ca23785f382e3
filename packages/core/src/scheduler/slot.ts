import type { KindStats, SlotRequest } from './admission.js'
import type { SharedStart } from './shared-limits.js'

/** A granted model call; `release` frees the slot and settles its reservation with the tokens it used. */
export interface Slot {
  /** How long the call waited in the queue, in ms. */
  waitedMs: number
  release(tokens: number): void
}

/** A call waiting in the queue for its slot; `done` once it got one, failed or gave up. */
export interface Waiter {
  request: SlotRequest
  enqueuedAt: number
  seq: number
  grant: (slot: Slot) => void
  fail: (error: unknown) => void
  done: boolean
}

/** Who is told when a granted slot is released: the `Scheduler`. */
export interface SlotOwner {
  ended(slot: GrantedSlot, tokens: number): void
}

/** A granted call; released once, later releases do nothing. */
export class GrantedSlot implements Slot {
  private released = false

  constructor(
    private readonly scheduler: SlotOwner,
    readonly waitedMs: number,
    readonly request: SlotRequest,
    readonly reserved: number,
    readonly stats: KindStats | undefined,
    readonly lease: SharedStart | undefined,
  ) {}

  release(tokens: number): void {
    if (this.released) return
    this.released = true
    this.scheduler.ended(this, tokens)
  }
}
