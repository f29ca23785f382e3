import {
  type AgentRecord,
  applyRetention,
  assertRunId,
  checkRetention,
  decodeAgentRecord,
  decodeRunRecord,
  encodeRecord,
  filterRuns,
  hasBounds,
  type RunFilter,
  type RunId,
  type RunRecord,
  type RunRetention,
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
  /** Which finished runs to keep (default: every one); applied each time a run finishes. */
  retention?: RunRetention
}

/**
 * A `RunStore` on Redis: the run record in a string key, one hash field per agent, a sorted
 * set by creation time for `listRuns`, and one of finished runs by the time they finished for
 * retention. Production Redis needs AOF and `noeviction`.
 */
export function redisStore(options: RedisStoreOptions = {}): RunStore {
  const retention = checkRetention(options.retention)
  const owned = !options.connection
  const redis = options.connection ?? new Redis(options.url ?? process.env.REDIS_URL ?? defaultRedisUrl)
  const prefix = options.prefix ?? 'cohort:'
  const runKey = (runId: string) => `${prefix}run:${runId}`
  const agentsKey = (runId: string) => `${prefix}agents:${runId}`
  const indexKey = `${prefix}runs`
  const finishedKey = `${prefix}finished`
  // Set once every run of the index has been entered in `finishedKey`: a version before it kept no such set.
  const finishedCompleteKey = `${prefix}finished:complete`
  let finishedComplete: Promise<void> | undefined

  const completeFinished = () => {
    finishedComplete ??= (async () => {
      if (await redis.exists(finishedCompleteKey)) return
      const ids = await redis.zrange(indexKey, 0, '-1')
      for (let from = 0; from < ids.length; from += 500) {
        const chunk = ids.slice(from, from + 500)
        const texts = await redis.mget(chunk.map(runKey))
        const finished = texts.flatMap((text, i) => {
          try {
            const run = text === null ? undefined : decodeRunRecord(text, runKey(chunk[i]!))
            return run && run.status !== 'running' ? [run.updatedAt, run.id] : []
          } catch {
            return []
          }
        })
        if (finished.length > 0) await redis.zadd(finishedKey, ...finished)
      }
      await redis.set(finishedCompleteKey, '1')
    })().catch((error: unknown) => {
      finishedComplete = undefined
      throw error
    })
    return finishedComplete
  }

  /** The finished runs `kept` does not keep, oldest first: a prefix of the finished set (by time, then id). */
  const prune = async (kept: RunRetention): Promise<RunId[]> => {
    await completeFinished()
    const [excess, old] = await Promise.all([
      kept.maxFinishedRuns === undefined
        ? 0
        : redis.zcard(finishedKey).then((count) => Math.max(0, count - kept.maxFinishedRuns!)),
      kept.maxAgeMs === undefined ? 0 : redis.zcount(finishedKey, '-inf', `(${Date.now() - kept.maxAgeMs}`),
    ])
    const count = Math.max(excess, old)
    if (count === 0) return []
    const ids = await redis.zrange(finishedKey, 0, String(count - 1))
    const removal = redis.multi()
    for (const id of ids) removal.del(runKey(id), agentsKey(id)).zrem(indexKey, id).zrem(finishedKey, id)
    await removal.exec().then(failOnError)
    return ids
  }

  const loadRunRecord = async (runId: string): Promise<RunRecord | undefined> => {
    assertRunId(runId)
    const text = await redis.get(runKey(runId))
    return text === null ? undefined : decodeRunRecord(text, `redis:${runKey(runId)}`)
  }

  return {
    async saveRun(record) {
      assertRunId(record.id)
      const finished = record.status !== 'running'
      const write = redis
        .multi()
        .set(runKey(record.id), encodeRecord(record))
        .zadd(indexKey, record.createdAt, record.id)
      if (finished) write.zadd(finishedKey, record.updatedAt, record.id)
      else write.zrem(finishedKey, record.id)
      await write.exec().then(failOnError)
      if (finished && hasBounds(retention))
        await applyRetention(() => prune(retention), `redisStore(${prefix})`)
    },
    async saveAgent(runId, record) {
      assertRunId(runId)
      await redis.hset(agentsKey(runId), record.id, encodeRecord(record))
    },
    async saveAgents(runId, records) {
      assertRunId(runId)
      if (records.length === 0) return
      // One HSET of every field: one command, applied whole, one round trip for the batch.
      const fields = new Map(records.map((record) => [record.id, encodeRecord(record)]))
      await redis.hset(agentsKey(runId), fields)
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
      await redis
        .multi()
        .del(runKey(runId), agentsKey(runId))
        .zrem(indexKey, runId)
        .zrem(finishedKey, runId)
        .exec()
        .then(failOnError)
    },
    async prune(kept) {
      return prune(kept === undefined ? retention : checkRetention(kept))
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
