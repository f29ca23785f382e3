// Redis plumbing for the tests: reachability, unique names, and removing what a test created.
import { randomUUID } from 'node:crypto'
import { Queue } from 'bullmq'
import { Redis } from 'ioredis'
import { redisOptionsFromUrl } from '../src/connection.js'

export const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'

export function uniqueName(label: string): string {
  return `${label}-${randomUUID().slice(0, 8)}`
}

export async function redisReachable(): Promise<boolean> {
  const redis = new Redis(redisUrl, {
    lazyConnect: true,
    connectTimeout: 1000,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  })
  redis.on('error', () => {})
  try {
    await redis.connect()
    return (await redis.ping()) === 'PONG'
  } catch {
    return false
  } finally {
    redis.disconnect()
  }
}

/** A client of the tests' Redis, for looking at (or changing) what a store wrote; the caller disconnects it. */
export function openRedis(): Redis {
  return new Redis(redisUrl)
}

/** Deletes every key that starts with `prefix`. */
export async function deleteKeys(prefix: string): Promise<void> {
  const redis = new Redis(redisUrl)
  try {
    let cursor = '0'
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 500)
      if (keys.length > 0) await redis.del(...keys)
      cursor = next
    } while (cursor !== '0')
  } finally {
    await redis.quit()
  }
}

export function openQueue(name: string, url = redisUrl): Queue {
  return new Queue(name, { connection: redisOptionsFromUrl(url) })
}

/** Removes a queue's jobs and keys, then closes it. */
export async function dropQueue(queue: Queue): Promise<void> {
  await queue.obliterate({ force: true })
  await queue.close()
}
