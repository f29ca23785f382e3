import {
  type AgentRecord,
  assertRunId,
  decodeAgentRecord,
  decodeRunRecord,
  encodeRecord,
  filterRuns,
  type RunFilter,
  type RunRecord,
  type RunStore,
} from '@cohort/core'
import { Redis } from 'ioredis'
import { defaultRedisUrl } from './connection.js'

export interface RedisStoreOptions {
  /** A client of your own, left open by `close`. */
  connection?: Redis
  /** Otherwise the store opens (and closes) its own client: `REDIS_URL`, then redis://127.0.0.1:6379. */
  url?: string
  /** Prepended to every key (default `cohort:`). */
  prefix?: string
}

/**
 * A `RunStore` on Redis: the run record in a string key, one hash field per agent, and a
 * sorted set by creation time for `listRuns`. Production Redis needs AOF and `noeviction`.
 */
export function redisStore(options: RedisStoreOptions = {}): RunStore {
  const owned = !options.connection
  const redis = options.connection ?? new Redis(options.url ?? process.env.REDIS_URL ?? defaultRedisUrl)
  const prefix = options.prefix ?? 'cohort:'
  const runKey = (runId: string) => `${prefix}run:${runId}`
  const agentsKey = (runId: string) => `${prefix}agents:${runId}`
  const indexKey = `${prefix}runs`

  const loadRunRecord = async (runId: string): Promise<RunRecord | undefined> => {
    assertRunId(runId)
    const text = await redis.get(runKey(runId))
    return text === null ? undefined : decodeRunRecord(text, `redis:${runKey(runId)}`)
  }

  return {
    async saveRun(record) {
      assertRunId(record.id)
      await redis
        .multi()
        .set(runKey(record.id), encodeRecord(record))
        .zadd(indexKey, record.createdAt, record.id)
        .exec()
        .then(failOnError)
    },
    async saveAgent(runId, record) {
      assertRunId(runId)
      await redis.hset(agentsKey(runId), record.id, encodeRecord(record))
    },
    async loadRun(runId) {
      const run = await loadRunRecord(runId)
      if (!run) return undefined
      const fields = await redis.hgetall(agentsKey(runId))
      const agents: AgentRecord[] = Object.entries(fields).map(([id, text]) =>
        decodeAgentRecord(text, `redis:${agentsKey(runId)}/${id}`),
      )
      return { run, agents }
    },
    async loadAgent(runId, agentId) {
      assertRunId(runId)
      const text = await redis.hget(agentsKey(runId), agentId)
      return text === null ? undefined : decodeAgentRecord(text, `redis:${agentsKey(runId)}/${agentId}`)
    },
    loadRunRecord,
    async listRuns(filter: RunFilter = {}) {
      const min = filter.since ?? '-inf'
      const max = filter.until === undefined ? '+inf' : `(${filter.until}`
      const ids = await redis.zrangebyscore(indexKey, min, max)
      if (ids.length === 0) return []
      const texts = await redis.mget(ids.map(runKey))
      const records = texts.flatMap((text, i) =>
        text === null ? [] : [decodeRunRecord(text, `redis:${runKey(ids[i]!)}`)],
      )
      return filterRuns(records, filter)
    },
    async deleteRun(runId) {
      assertRunId(runId)
      await redis.multi().del(runKey(runId), agentsKey(runId)).zrem(indexKey, runId).exec().then(failOnError)
    },
    async close() {
      if (owned) await redis.quit()
    },
  }
}

function failOnError(results: [Error | null, unknown][] | null): void {
  const failed = results?.find(([error]) => error)
  if (failed?.[0]) throw failed[0]
}
