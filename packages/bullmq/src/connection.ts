import type { ConnectionOptions, RedisOptions } from 'bullmq'
import { Redis } from 'ioredis'

export const defaultRedisUrl = 'redis://127.0.0.1:6379'

/** Either a connection (options or a client) or a `redis://` URL. */
export interface ConnectionInput {
  connection?: ConnectionOptions
  /** Undefined is the default (`REDIS_URL`, then redis://127.0.0.1:6379), so `url: process.env.REDIS_URL` type-checks. */
  url?: string | undefined
}

/** Options from a `redis://` or `rediss://` URL, with what BullMQ's workers need (no per-request retry cap). */
export function redisOptionsFromUrl(url: string): RedisOptions {
  const parsed = new URL(url)
  const db = parsed.pathname.length > 1 ? Number(parsed.pathname.slice(1)) : undefined
  return {
    host: parsed.hostname || '127.0.0.1',
    port: parsed.port ? Number(parsed.port) : 6379,
    ...(parsed.username && { username: decodeURIComponent(parsed.username) }),
    ...(parsed.password && { password: decodeURIComponent(parsed.password) }),
    ...(db !== undefined && Number.isInteger(db) && { db }),
    ...(parsed.protocol === 'rediss:' && { tls: {} }),
    maxRetriesPerRequest: null,
  }
}

export function resolveConnection(input: ConnectionInput): ConnectionOptions {
  return input.connection ?? redisOptionsFromUrl(input.url ?? process.env.REDIS_URL ?? defaultRedisUrl)
}

/**
 * A Redis client of its own on `connection` (a client given is duplicated), connecting at its
 * first command: for what BullMQ's own clients do not do (limits, locks).
 */
export function ownRedis(connection: ConnectionOptions): Redis {
  return 'duplicate' in connection && typeof connection.duplicate === 'function'
    ? (connection.duplicate({ lazyConnect: true }) as Redis)
    : new Redis({ ...(connection as RedisOptions), lazyConnect: true })
}

/**
 * Runs `use` on a client of its own (`ownRedis`), disconnected after. Its first connection error
 * fails the call: without a listener ioredis printed it as an unhandled error event, and retried
 * the command without end.
 */
export async function withOwnRedis<T>(
  connection: ConnectionOptions,
  use: (redis: Redis) => Promise<T>,
): Promise<T> {
  const redis = ownRedis(connection)
  let onError!: (error: Error) => void
  const failed = new Promise<never>((_, reject) => {
    onError = reject
  })
  failed.catch(() => {})
  redis.on('error', onError)
  try {
    return await Promise.race([use(redis), failed])
  } finally {
    redis.disconnect()
  }
}
