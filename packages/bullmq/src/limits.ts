import {
  fullAgainAt,
  fullBuckets,
  type RateLimit,
  type RateState,
  type SharedCall,
  type SharedLimits,
  type SharedStart,
  settleCall,
  takeCall,
} from '@cohort/core'
import type { RedisOptions } from 'bullmq'
import { Redis } from 'ioredis'
import { Semaphore } from 'redis-semaphore'
import { type ConnectionInput, resolveConnection } from './connection.js'

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
 * `SharedLimits` on Redis, so that workers together stay within `rateLimits` and
 * `maxConcurrentModelCalls`. Calls in flight are places of a redis-semaphore `Semaphore`: each
 * is renewed while its call runs and lapses when its worker dies. Each model's two token buckets
 * are `takeCall`/`settleCall` (the same functions the scheduler runs in one process) on one key,
 * read and written in a WATCH/MULTI transaction at Redis's clock. BullMQ's own `limiter` counts
 * jobs, and a job here is an agent's segment: any number of model calls, or none.
 */
export function redisLimits(options: RedisLimitsOptions = {}): RedisLimits {
  const connection = resolveConnection(options)
  // A connection of its own: WATCH belongs to the connection, and transactions here run one at a time.
  // Lazy: a worker whose runtime has no limits never connects.
  const redis: Redis =
    'duplicate' in connection && typeof connection.duplicate === 'function'
      ? (connection.duplicate({ lazyConnect: true }) as Redis)
      : new Redis({ ...(connection as RedisOptions), lazyConnect: true })
  const prefix = options.prefix ?? 'cohort-limits:'
  const leaseMs = options.leaseMs ?? 10_000
  const pollMs = options.pollMs ?? 20
  const onError = options.onError ?? ((error: Error) => console.error('cohort limits:', error))
  const report = (error: unknown) => onError(error instanceof Error ? error : new Error(String(error)))

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

  return {
    async tryStart(call: SharedCall): Promise<SharedStart> {
      const { model, rate, tokens, maxConcurrent } = call
      let place: Semaphore | undefined
      if (maxConcurrent !== undefined) {
        place = new Semaphore(redis, `${prefix}calls`, maxConcurrent, {
          lockTimeout: leaseMs,
          acquireAttemptsLimit: 1,
          retryInterval: 1,
          onLockLost: report,
        })
        if (!(await place.tryAcquire())) return { started: false, retryInMs: pollMs }
      }
      if (rate) {
        const waitMs = await take(model, rate, tokens).catch(async (error: unknown) => {
          await place?.release()
          throw error
        })
        if (waitMs > 0) {
          await place?.release()
          return { started: false, retryInMs: waitMs }
        }
      }
      return {
        started: true,
        end(used) {
          const settled = rate && used !== tokens ? settle(model, rate, tokens, used) : Promise.resolve()
          void settled
            .catch(report)
            .then(() => place?.release())
            .catch(report)
        },
      }
    },
    async close() {
      await tail
      if (redis.status === 'wait') redis.disconnect()
      else await redis.quit()
    },
  }
}
