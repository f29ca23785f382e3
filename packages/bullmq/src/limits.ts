import {
  fullAgainAt,
  fullBuckets,
  type RateLimit,
  type RateState,
  type SharedBudget,
  type SharedCall,
  type SharedLimits,
  type SharedStart,
  settleCall,
  takeCall,
} from '@cohort/core'
import { Semaphore } from 'redis-semaphore'
import { type ConnectionInput, ownRedis, resolveConnection } from './connection.js'

/** A run's budget count is forgotten after this long without a call (then read again from the store). */
const budgetIdleMs = 60 * 60_000

/** What `takeBudgetScript` answers when Redis holds no count for the run. */
const unknownRun = -1

/**
 * A run's budget is a hash: `used` by calls that ended, `reserved` by calls in flight. A call
 * takes its estimate if it fits (1) or not (0), atomically; -1: no count yet.
 * KEYS[1] the run's key; ARGV max, tokens, idle ms.
 */
const takeBudgetScript = `
local used = redis.call('HGET', KEYS[1], 'used')
if not used then return {-1, 0} end
used = tonumber(used)
local reserved = tonumber(redis.call('HGET', KEYS[1], 'reserved') or '0')
redis.call('PEXPIRE', KEYS[1], ARGV[3])
if used + reserved + tonumber(ARGV[2]) > tonumber(ARGV[1]) then return {0, used} end
redis.call('HINCRBY', KEYS[1], 'reserved', ARGV[2])
return {1, used}`

/** Starts a run's count at what its records say it used, unless another process did first. ARGV spent, idle ms. */
const startBudgetScript = `
redis.call('HSETNX', KEYS[1], 'used', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1`

/** A call ended: its estimate leaves `reserved`, what it used joins `used`. ARGV reserved, used, idle ms. */
const settleBudgetScript = `
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local reserved = tonumber(redis.call('HINCRBY', KEYS[1], 'reserved', 0 - tonumber(ARGV[1])))
if reserved < 0 then redis.call('HSET', KEYS[1], 'reserved', 0) end
redis.call('HINCRBY', KEYS[1], 'used', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1`

/** Counts in Redis are integers (HINCRBY): a count of tokens is rounded up, the same way where it is taken and given back. */
function wholeTokens(tokens: number): number {
  return Math.max(0, Math.ceil(tokens))
}

export type RedisLimitsOptions = ConnectionInput & {
  /** Prepended to every key (default `cohort-limits:`); workers that share limits share the prefix. */
  prefix?: string
  /** A call's place lapses this long after its worker stops renewing it (died), in ms (default 10 s). */
  leaseMs?: number
  /** How soon a call refused a place among `maxConcurrentModelCalls` asks again, in ms (default 20). */
  pollMs?: number
  /** Errors of the store itself (a settle or release that failed, a lost place); default: console.error. */
  onError?: (error: Error) => void
}

export interface RedisLimits extends SharedLimits {
  /** Closes the store's connection. */
  close(): Promise<void>
}

/**
 * `SharedLimits` on Redis, so that workers together stay within `rateLimits`,
 * `maxConcurrentModelCalls`, `startIntervalMs` and each run's `maxRunTokens`. Calls in flight are
 * places of a redis-semaphore `Semaphore`: each is renewed while its call runs and lapses when its
 * worker dies. Each model's two token buckets are `takeCall`/`settleCall` (the same functions the
 * scheduler runs in one process) on one key, read and written in a WATCH/MULTI transaction at
 * Redis's clock. The interval is a key that a start sets and that lapses after it. A run's budget
 * is a count of its own (the budget scripts above). BullMQ's own `limiter` counts jobs, and a job
 * here is an agent's segment: any number of model calls, or none.
 */
export function redisLimits(options: RedisLimitsOptions = {}): RedisLimits {
  const connection = resolveConnection(options)
  // A connection of its own: WATCH belongs to the connection, and transactions here run one at a time.
  // Lazy: a worker whose runtime has no limits never connects.
  const redis = ownRedis(connection)
  const prefix = options.prefix ?? 'cohort-limits:'
  const leaseMs = options.leaseMs ?? 10_000
  const pollMs = options.pollMs ?? 20
  const onError = options.onError ?? ((error: Error) => console.error('cohort limits:', error))
  const report = (error: unknown) => onError(error instanceof Error ? error : new Error(String(error)))
  // Without a listener ioredis prints each failed connect as an unhandled error event.
  redis.on('error', report)

  let tail: Promise<unknown> = Promise.resolve()
  const inTurn = <T>(op: () => Promise<T>): Promise<T> => {
    const next = tail.then(op, op)
    tail = next.catch(() => {})
    return next
  }

  /** Applies `change` to a model's buckets atomically; returns what it decided. */
  const transact = <T>(
    model: string,
    change: (state: RateState, now: number) => { state?: RateState; result: T },
  ): Promise<T> =>
    inTurn(async () => {
      const key = `${prefix}rate:${model}`
      for (;;) {
        await redis.watch(key)
        const [[timeError, time], [getError, text]] = (await redis.pipeline().time().get(key).exec()) as [
          [Error | null, [string, string]],
          [Error | null, string | null],
        ]
        if (timeError || getError) throw timeError ?? getError
        const now = Number(time[0]) * 1000 + Number(time[1]) / 1000
        const { state, result } = change(text ? (JSON.parse(text) as RateState) : fullBuckets, now)
        if (!state) {
          await redis.unwatch()
          return result
        }
        // Forgotten once full again: a full bucket and no key are the same.
        const ttl = Math.max(1, Math.ceil(fullAgainAt(state) - now))
        if (await redis.multi().set(key, JSON.stringify(state), 'PX', ttl).exec()) return result
      }
    })

  const take = (model: string, rate: RateLimit, tokens: number) =>
    transact(model, (state, now) => {
      const decision = takeCall(state, rate, tokens, now)
      return decision.ok ? { state: decision.state, result: 0 } : { result: decision.waitMs }
    })

  const settle = (model: string, rate: RateLimit, reserved: number, used: number) =>
    transact(model, (state) => ({ state: settleCall(state, rate, reserved, used), result: undefined }))

  /**
   * 0 when a call may start now (its start is marked, lapsing after `intervalMs`), else the ms
   * until it may. A start marked for a call that a rate limit then holds back is kept: the next
   * call waits out the interval anyway, never less.
   */
  const spaced = async (intervalMs: number): Promise<number> => {
    const key = `${prefix}last-start`
    if (await redis.set(key, '1', 'PX', Math.max(1, Math.ceil(intervalMs)), 'NX')) return 0
    const left = await redis.pttl(key)
    return left > 0 ? left : 1
  }

  const budgetKey = (budget: SharedBudget) => `${prefix}budget:${budget.runId}`

  /** Takes `tokens` from the run's budget if they fit; the count starts from the run's stored usage. */
  const takeBudget = async (budget: SharedBudget, tokens: number): Promise<{ ok: boolean; used: number }> => {
    const key = budgetKey(budget)
    for (;;) {
      const [status, used] = (await inTurn(() =>
        redis.eval(takeBudgetScript, 1, key, budget.max, wholeTokens(tokens), budgetIdleMs),
      )) as [number, number]
      if (status !== unknownRun) return { ok: status === 1, used }
      const spent = await budget.spent()
      await inTurn(() => redis.eval(startBudgetScript, 1, key, wholeTokens(spent), budgetIdleMs))
    }
  }

  /** A call took `reserved` from the budget and used `used`; a count that lapsed meanwhile is left to the store. */
  const settleBudget = (budget: SharedBudget, reserved: number, used: number) =>
    inTurn(() =>
      redis.eval(
        settleBudgetScript,
        1,
        budgetKey(budget),
        wholeTokens(reserved),
        wholeTokens(used),
        budgetIdleMs,
      ),
    )

  return {
    async tryStart(call: SharedCall): Promise<SharedStart> {
      const { model, rate, tokens, maxConcurrent, budget, startIntervalMs } = call
      if (budget) {
        const taken = await takeBudget(budget, tokens)
        if (!taken.ok) return { started: false, overBudget: { used: taken.used } }
      }
      // A call that does not start now gives its tokens back to the run's budget.
      const giveBack = async () => {
        if (budget) await settleBudget(budget, tokens, 0)
      }
      let place: Semaphore | undefined
      try {
        if (maxConcurrent !== undefined) {
          place = new Semaphore(redis, `${prefix}calls`, maxConcurrent, {
            lockTimeout: leaseMs,
            acquireAttemptsLimit: 1,
            retryInterval: 1,
            onLockLost: report,
          })
          if (!(await place.tryAcquire())) {
            await giveBack()
            return { started: false, retryInMs: pollMs }
          }
        }
        if (startIntervalMs !== undefined) {
          const waitMs = await spaced(startIntervalMs)
          if (waitMs > 0) {
            await place?.release()
            await giveBack()
            return { started: false, retryInMs: waitMs }
          }
        }
        if (rate) {
          const waitMs = await take(model, rate, tokens)
          if (waitMs > 0) {
            await place?.release()
            await giveBack()
            return { started: false, retryInMs: waitMs }
          }
        }
      } catch (error) {
        await place?.release().catch(report)
        await giveBack().catch(report)
        throw error
      }
      return {
        started: true,
        end(used) {
          const settled = Promise.all([
            rate && used !== tokens ? settle(model, rate, tokens, used) : undefined,
            budget ? settleBudget(budget, tokens, used) : undefined,
          ])
          void settled
            .catch(report)
            .then(() => place?.release())
            .catch(report)
        },
      }
    },
    async close() {
      // Not connected (never, or Redis is down): its commands wait for Redis without end, and the
      // calls waiting on them would hold the close (a worker's close(true) too): dropped at once.
      if (redis.status !== 'ready') return redis.disconnect()
      await tail
      await redis.quit()
    },
  }
}
