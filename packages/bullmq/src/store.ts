import {
  type AgentRecord,
  applyRetention,
  assertAgentRecordOf,
  assertRunId,
  checkRetention,
  checkRunFilter,
  chunksNeeded,
  decodeAgentRecord,
  decodeRunRecord,
  encodeAgentRecordParts,
  encodeRecord,
  filterRuns,
  hasBounds,
  joinRecordParts,
  type KeepingStore,
  type RunFilter,
  type RunId,
  type RunRecord,
  type RunRetention,
  SnapshotError,
} from '@cohort/core'
import { Redis } from 'ioredis'
import { defaultRedisUrl } from './connection.js'
import { failOnError, withStoreErrors } from './store-errors.js'
import { claimScript, releaseClaimScript, saveAgentsScript } from './store-scripts.js'

export interface RedisStoreOptions {
  /** A client of your own, left open by `close`. */
  connection?: Redis
  /** Otherwise the store opens (and closes) its own client: `REDIS_URL`, then redis://127.0.0.1:6379. */
  url?: string | undefined
  /** Prepended to every key (default `cohort:`). */
  prefix?: string
  /** Which finished runs to keep (default: every one); applied each time a run finishes. */
  retention?: RunRetention
}

/**
 * A `RunStore` on Redis: the run record in a string key, one hash field per agent, one hash
 * field per chunk of a long agent history (`<n>:<agent id>`, written once; see
 * `encodeAgentRecordParts`), a sorted set by creation time for `listRuns`, and one of finished
 * runs by the time they finished for retention. Production Redis needs AOF and `noeviction`.
 */
/** A `RunStore` whose optional reads, `deleteRun`, `prune` and claims are always there. */
export type RedisStore = KeepingStore & {
  /** Ends the connection the store opened; a connection passed in is left open. */
  close(): Promise<void>
}

export function redisStore(options: RedisStoreOptions = {}): RedisStore {
  const retention = checkRetention(options.retention)
  const owned = !options.connection
  const redis = options.connection ?? new Redis(options.url ?? process.env.REDIS_URL ?? defaultRedisUrl)
  const prefix = options.prefix ?? 'cohort:'
  const runKey = (runId: string) => `${prefix}run:${runId}`
  const agentsKey = (runId: string) => `${prefix}agents:${runId}`
  const historyKey = (runId: string) => `${prefix}history:${runId}`
  const claimKey = (runId: string) => `${prefix}claim:${runId}`
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
            const run = text === null ? undefined : runRecordAt(text, runKey(chunk[i]!), chunk[i]!)
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
    for (const id of ids)
      removal
        .del(runKey(id), agentsKey(id), historyKey(id), claimKey(id))
        .zrem(indexKey, id)
        .zrem(finishedKey, id)
    await removal.exec().then(failOnError)
    return ids
  }

  const loadRunRecord = async (runId: string): Promise<RunRecord | undefined> => {
    assertRunId(runId)
    const text = await redis.get(runKey(runId))
    if (text !== null) return runRecordAt(text, runKey(runId), runId)
    if ((await redis.hlen(agentsKey(runId))) > 0) throw recordMissing(runKey(runId))
    return undefined
  }

  /** The records as one HSET, the new chunks of their histories as another, in one transaction: one round trip. */
  const saveAgents = async (
    runId: string,
    records: AgentRecord[],
    storedMessages: readonly number[] = [],
  ) => {
    assertRunId(runId)
    for (const record of records) assertAgentRecordOf(runId, record)
    if (records.length === 0) return
    // The last record of an agent wins, as in one HSET.
    const latest = new Map<string, string[]>()
    records.forEach((record, i) => {
      const parts = encodeAgentRecordParts(record, storedMessages[i] ?? 0)
      const chunks = parts.chunks.flatMap((chunk) => [`${chunk.index}:${record.id}`, chunk.json])
      latest.delete(record.id)
      latest.set(record.id, [
        record.id,
        joinRecordParts(parts.json, parts.annotations),
        String(parts.chunks.length),
        ...chunks,
      ])
    })
    await redis.eval(
      saveAgentsScript,
      2,
      agentsKey(runId),
      historyKey(runId),
      latest.size,
      ...[...latest.values()].flat(),
    )
  }

  return withStoreErrors(`redis store (prefix ${prefix})`, {
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
    async saveAgent(runId, record, storedMessages = 0) {
      await saveAgents(runId, [record], [storedMessages])
    },
    saveAgents,
    async loadRun(runId) {
      const run = await loadRunRecord(runId)
      if (!run) return undefined
      // In one transaction, so the records and their histories agree.
      const [fields, history] = (await redis
        .multi()
        .hgetall(agentsKey(runId))
        .hgetall(historyKey(runId))
        .exec()
        .then((results) => {
          failOnError(results)
          return results!.map(([, value]) => value)
        })) as [Record<string, string>, Record<string, string>]
      const histories = historiesOf(history)
      const agents: AgentRecord[] = Object.entries(fields).map(([id, text]) => {
        const source = `redis:${agentsKey(runId)}/${id}`
        return agentRecordAt(decodeAgentRecord(text, source, histories.get(id)), source, runId, id)
      })
      return { run, agents }
    },
    async loadAgent(runId, agentId) {
      assertRunId(runId)
      const source = `redis:${agentsKey(runId)}/${agentId}`
      const text = await redis.hget(agentsKey(runId), agentId)
      if (text === null) return undefined
      // Read after the record: a later write's chunks hold the same messages (a history only grows).
      // No more than the run's history holds: a record that claims a billion messages is refused, not read.
      const claimed = chunksNeeded(text)
      const needed = claimed === 0 ? 0 : Math.min(claimed, await redis.hlen(historyKey(runId)))
      const chunks =
        needed === 0
          ? []
          : await redis.hmget(
              historyKey(runId),
              ...Array.from({ length: needed }, (_, n) => `${n}:${agentId}`),
            )
      const missing = chunks.indexOf(null)
      const record = decodeAgentRecord(
        text,
        source,
        (missing === -1 ? chunks : chunks.slice(0, missing)) as string[],
      )
      return agentRecordAt(record, source, runId, agentId)
    },
    loadRunRecord,
    async listRuns(filter: RunFilter = {}) {
      checkRunFilter(filter)
      const min = filter.since ?? '-inf'
      const max = filter.until === undefined ? '+inf' : `(${filter.until}`
      const ids = await redis.zrangebyscore(indexKey, min, max)
      if (ids.length === 0) return []
      const texts = await redis.mget(ids.map(runKey))
      const records: RunRecord[] = []
      for (const [i, text] of texts.entries()) {
        if (text === null) continue
        try {
          records.push(runRecordAt(text, runKey(ids[i]!), ids[i]!))
        } catch (error) {
          // As in the other stores: an unreadable run is left for `loadRun` to report; a listing skips it.
          if (!(error instanceof SnapshotError)) throw error
        }
      }
      return filterRuns(records, filter)
    },
    async deleteRun(runId) {
      assertRunId(runId)
      await redis
        .multi()
        .del(runKey(runId), agentsKey(runId), historyKey(runId), claimKey(runId))
        .zrem(indexKey, runId)
        .zrem(finishedKey, runId)
        .exec()
        .then(failOnError)
    },
    async prune(kept) {
      return prune(kept === undefined ? retention : checkRetention(kept))
    },
    async claimRun(runId, request) {
      assertRunId(runId)
      const [owner, until] = (await redis.eval(
        claimScript,
        1,
        claimKey(runId),
        request.owner,
        request.until,
        Date.now(),
        request.replacing ?? '',
        request.renewing ? '1' : '0',
      )) as [string, string]
      return { owner, until: Number(until) }
    },
    async releaseRun(runId, owner) {
      assertRunId(runId)
      await redis.eval(releaseClaimScript, 1, claimKey(runId), owner)
    },
    async close() {
      if (owned) await redis.quit()
    },
  })
}

/**
 * The run record stored under run `runId`'s key. A key copied or edited by hand to hold another
 * run's record is refused, not taken for that run (as fileStore and postgresStore do).
 */
function runRecordAt(text: string, key: string, runId: string): RunRecord {
  const source = `redis:${key}`
  const record = decodeRunRecord(text, source)
  if (record.id !== runId) throw notKeyed(source, 'id', record.id, runId, 'run')
  return record
}

/** An agent record read from run `runId`'s hash, field `agentId`; one that is another's is refused. */
function agentRecordAt(record: AgentRecord, source: string, runId: string, agentId: string): AgentRecord {
  if (record.runId !== runId) throw notKeyed(source, 'runId', record.runId, runId, 'run')
  if (record.id !== agentId) throw notKeyed(source, 'id', record.id, agentId, 'agent')
  return record
}

function notKeyed(source: string, field: string, found: string, key: string, what: string): SnapshotError {
  return new SnapshotError(source, `"${found}"; expected "${key}", the ${what} its key is for`, field)
}

/**
 * A run whose record is gone (deleted by hand) while its agents' records are there: read as no
 * run, its id would be taken by a new run written over and among the old agents.
 */
function recordMissing(key: string): SnapshotError {
  return new SnapshotError(
    `redis:${key}`,
    `the run record is missing, and the store holds its agents' records; restore the key, or remove the run (deleteRun) to free the id`,
  )
}

/** Each agent's history chunks, in order, from the history hash's fields (`<n>:<agent id>`). */
function historiesOf(fields: Record<string, string>): Map<string, string[]> {
  const histories = new Map<string, string[]>()
  for (const [field, chunk] of Object.entries(fields)) {
    const colon = field.indexOf(':')
    const agentId = field.slice(colon + 1)
    let history = histories.get(agentId)
    if (!history) {
      history = []
      histories.set(agentId, history)
    }
    history[Number(field.slice(0, colon))] = chunk
  }
  return histories
}
