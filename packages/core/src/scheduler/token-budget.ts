import { LimitExceededError } from '../errors.js'

/**
 * A run's token budget (`maxRunTokens`). A model call reserves its estimate before it starts and
 * settles with what it really used when it ends, so calls running at once cannot pass the budget
 * together: one that does not fit waits for the calls in flight, or fails when none is left.
 */
export class TokenBudget {
  /** Tokens that ended calls used. */
  used = 0
  /** Estimates of the calls in flight. */
  reserved = 0

  /**
   * @param max tokens the run may use; null: no limit (only counts).
   * @param owner names the budget in errors ("run r1").
   * @param stored the run and what its stored records say it used: with shared limits (workers
   *   that run agents of one run), the budget is counted in the shared store, for all of them.
   */
  constructor(
    readonly max: number | null,
    readonly owner: string,
    readonly stored?: { runId: string; spent: () => Promise<number> },
  ) {}

  /** Books tokens used outside a reservation (a restored run's earlier calls). */
  book(tokens: number): void {
    this.used += tokens
  }

  fits(tokens: number): boolean {
    return this.max === null || this.used + this.reserved + tokens <= this.max
  }

  reserve(tokens: number): void {
    this.reserved += tokens
  }

  settle(reserved: number, used: number): void {
    this.reserved -= reserved
    this.used += used
  }

  /** Why a call of `tokens` cannot start (nothing in flight can make room); `used`: as counted in a shared store. */
  exceeded(tokens: number, used = this.used): LimitExceededError {
    return new LimitExceededError(
      'maxRunTokens',
      `${this.owner} has used ${used} tokens; a model call expected to use ${tokens} more would pass its budget of ${this.max} (maxRunTokens)`,
    )
  }
}
