import {
  InvalidInputError,
  type RunStore,
  type Runtime,
  readAgentRecord,
  readRunRecord,
  type SegmentOutcome,
  SnapshotError,
} from '@cohort/core'
import { DelayedError, type Job, Queue, UnrecoverableError, WaitingChildrenError, Worker } from 'bullmq'
import { cancelChannel } from './cancel.js'
import { type ConnectionInput, ownRedis, resolveConnection } from './connection.js'
import {
  defaultQueueName,
  isSettled,
  jobDataProblem,
  jobDefaults,
  type SegmentJobData,
  type SegmentJobResult,
  segmentJobId,
} from './jobs.js'
import { type RedisLimitsOptions, redisLimits } from './limits.js'
import { checkOptions, checkQueueCall } from './options.js'
import { failOnError } from './store-errors.js'

export type CreateWorkerOptions = ConnectionInput & {
  runtime: Runtime
  queueName?: string
  /** Segments this worker runs at once (default 10): they mostly wait on model calls. */
  concurrency?: number
  /** How long a job's lock lasts between renewals (default 60 s); a dead worker's job restarts after about this. */
  lockDuration?: number
  /** How often stalled jobs are looked for (default 30 s). */
  stalledInterval?: number
  /** Stalls a job survives before it fails for good (default 2). */
  maxStalledCount?: number
  /**
   * An agent whose dependencies run elsewhere is woken as one of its run's agents settles, and
   * besides tried again after this long (default 100 ms), then after as long as it has waited,
   * up to 2 s (or this, if longer).
   */
  dependencyRetryMs?: number
  /**
   * A job needing an agent definition this worker's runtime lacks (workers of two versions during
   * a rolling deploy) is put back for another worker, for up to this long (default 10 min); then it
   * fails its run, saying so.
   */
  missingDefinitionWaitMs?: number
  /** Start taking jobs at once (default true). */
  autorun?: boolean
  /** Errors of the worker itself (lost connection…); default: console.error. */
  onError?: (error: Error) => void
  /**
   * The runtime's `rateLimits` and `maxConcurrentModelCalls` are counted in Redis, so that all
   * workers together stay within them (default), with these options (default prefix
   * `cohort-limits:<queueName>:`); false: each worker counts alone.
   */
  sharedLimits?: false | Omit<RedisLimitsOptions, 'connection' | 'url'>
}

const workerOptionNames = [
  'connection',
  'url',
  'runtime',
  'queueName',
  'concurrency',
  'lockDuration',
  'stalledInterval',
  'maxStalledCount',
  'dependencyRetryMs',
  'missingDefinitionWaitMs',
  'autorun',
  'onError',
  'sharedLimits',
] as const satisfies readonly (keyof CreateWorkerOptions)[]

export interface CohortWorker {
  readonly worker: Worker<SegmentJobData, SegmentJobResult>
  /** Waits for running segments to finish (or not, with `force`), then closes every connection. */
  close(force?: boolean): Promise<void>
}

/** How long a run's keys of waiting dependents outlive their last use. */
const waitKeysTtlMs = 24 * 3600 * 1000

/** Guards against a segment that keeps finding its children done yet cannot go on. */
const maxRounds = 50

/** A BullMQ worker where one job is one segment of one agent (`runtime.runSegment`). */
export function createWorker(options: CreateWorkerOptions): CohortWorker {
  checkWorkerOptions(options)
  const connection = resolveConnection(options)
  const queueName = options.queueName ?? defaultQueueName
  const queue = new Queue<SegmentJobData, SegmentJobResult>(queueName, { connection })
  const { runtime } = options
  const dependencyRetryMs = options.dependencyRetryMs ?? 100
  const dependencyRetryMaxMs = Math.max(dependencyRetryMs, 2000)
  const missingDefinitionWaitMs = options.missingDefinitionWaitMs ?? 10 * 60_000
  const onError = options.onError ?? ((error: Error) => console.error('cohort worker:', error))
  // Without a listener BullMQ prints the queue's connection errors on the console.
  queue.on('error', onError)
  const limits =
    options.sharedLimits === false
      ? undefined
      : redisLimits({ prefix: `cohort-limits:${queueName}:`, onError, ...options.sharedLimits, connection })
  const unshare = limits && runtime.shareLimits(limits)
  const redis = ownRedis(connection)
  // Without a listener ioredis prints each failed connect as an unhandled error event.
  redis.on('error', onError)

  // A job delayed until its agent's dependencies settle is woken as soon as an agent of its run
  // settles, instead of at its next try (up to 2 s later, on every edge of a plan's critical
  // path). Each run keeps the ids of its jobs that wait so, and a count of its agents settled.
  const waitingKey = (runId: string) => queue.toKey(`dependents:${runId}`)
  const settledKey = (runId: string) => queue.toKey(`settled:${runId}`)
  const settledCount = async (runId: string) => Number((await redis.get(settledKey(runId))) ?? 0)
  const promote = async (jobId: string) => {
    const job = await queue.getJob(jobId)
    // It may have been woken already, or be running: then it has nothing to wait for.
    if (job && (await job.isDelayed())) await job.promote().catch(() => {})
  }
  const wakeDependents = async (runId: string) => {
    const waiting = await redis
      .multi()
      .incr(settledKey(runId))
      .pexpire(settledKey(runId), waitKeysTtlMs)
      .smembers(waitingKey(runId))
      .exec()
    failOnError(waiting)
    await Promise.all((waiting![2]![1] as string[]).map(promote))
  }

  const addChildren = async (parent: Job<SegmentJobData>, agentIds: string[]) => {
    await queue.addBulk(
      agentIds.map((agentId) => {
        const data: SegmentJobData = { ...withoutWaits(parent.data), agentId }
        return {
          name: agentId,
          data,
          opts: {
            ...jobDefaults,
            jobId: segmentJobId(data),
            parent: { id: parent.id!, queue: parent.queueQualifiedName },
            // A child that fails for good fails the run (see below) instead of leaving its parent waiting.
            ignoreDependencyOnFailure: true,
          },
        }
      }),
    )
  }

  /**
   * The parent found its children's jobs all done. True when it cannot go on: a child still
   * unsettled has finished its job waiting on input. Children with no job get one.
   */
  const blockedOnChildren = async (job: Job<SegmentJobData>): Promise<boolean> => {
    const { runId, agentId } = job.data
    const failures = Object.values(await job.getIgnoredChildrenFailures())
    if (failures.length > 0) await failRun(runtime.store, runId, `a sub-agent's job failed: ${failures[0]}`)
    const record = await readAgentRecord(runtime.store, runId, agentId)
    let blocked = false
    for (const link of record?.snapshot.context.children ?? []) {
      const child = await readAgentRecord(runtime.store, runId, link.id)
      if (!child || isSettled(child)) continue
      const childJob = await queue.getJob(segmentJobId({ ...job.data, agentId: link.id }))
      // Launched by a segment that died before it could add the jobs.
      if (!childJob) await addChildren(job, [link.id])
      else if (await childJob.isCompleted()) blocked = true
      else if (await childJob.isFailed()) await failRun(runtime.store, runId, `agent ${link.id}'s job failed`)
    }
    return blocked
  }

  /**
   * A segment that could not run. A job this runtime lacks a definition for is put back for a
   * worker that has it; a job of an agent the run does not have fails at once.
   */
  const segmentFailed = async (
    job: Job<SegmentJobData>,
    token: string | undefined,
    error: unknown,
  ): Promise<never> => {
    const { runId, agentId } = job.data
    if (lacksDefinition(error)) await putBack(job, token, error)
    if (await readAgentRecord(runtime.store, runId, agentId)) throw error
    throw new UnrecoverableError(
      `job ${job.id}: run ${runId} has no agent "${agentId}" in the store: expected an agent of a stored run, as enqueueRun, resumeRun and the workers add`,
    )
  }

  /** Delays the job for another worker, or fails it once it has waited `missingDefinitionWaitMs`. */
  const putBack = async (
    job: Job<SegmentJobData>,
    token: string | undefined,
    error: SnapshotError,
  ): Promise<never> => {
    const now = Date.now()
    const since = job.data.missingDefinitionSince ?? now
    const waited = now - since
    if (waited >= missingDefinitionWaitMs) {
      throw new UnrecoverableError(
        `${error.message}: the workers that took this job in ${waited} ms lack it; every worker must register the same agents and tools (a rolling deploy must end within missingDefinitionWaitMs)`,
      )
    }
    if (job.data.missingDefinitionSince === undefined)
      await job.updateData({ ...job.data, missingDefinitionSince: since })
    // Tried again after as long as it has waited (1-30 s): soon in a deploy, rarely when it lasts.
    const delay = Math.min(waitAgainMs(waited, 1000, 30_000), missingDefinitionWaitMs - waited)
    await job.moveToDelayed(now + delay, token)
    throw new DelayedError()
  }

  /**
   * Delays the job until its agent's dependencies may have settled: tried again after as long as
   * it has waited, so a long dependency costs a few segments, not one per `dependencyRetryMs`. Its
   * data says it waits, so that `answerRun` may take the job away (see there).
   */
  const awaitDependencies = async (
    job: Job<SegmentJobData>,
    token: string | undefined,
    settledBefore: number,
  ): Promise<never> => {
    const now = Date.now()
    const since = job.data.dependenciesPendingSince ?? now
    if (job.data.dependenciesPendingSince === undefined || job.data.missingDefinitionSince !== undefined)
      await job.updateData({ ...withoutWaits(job.data), dependenciesPendingSince: since })
    const { runId } = job.data
    failOnError(
      await redis.multi().sadd(waitingKey(runId), job.id!).pexpire(waitingKey(runId), waitKeysTtlMs).exec(),
    )
    await job.moveToDelayed(now + waitAgainMs(now - since, dependencyRetryMs, dependencyRetryMaxMs), token)
    // An agent that settled after the segment looked and before the job was listed woke nobody.
    if ((await settledCount(runId)) !== settledBefore) await promote(job.id!)
    throw new DelayedError()
  }

  const process = async (
    job: Job<SegmentJobData>,
    token?: string,
    signal?: AbortSignal,
  ): Promise<SegmentJobResult> => {
    // A job added by hand that names no agent of a run fails at once, and alone (see 'failed').
    const problem = jobDataProblem(job.data)
    if (problem) throw new UnrecoverableError(`job ${job.id} ${problem}`)
    const { runId, agentId } = job.data
    for (let round = 0; round < maxRounds; round++) {
      const settledBefore = await settledCount(runId)
      let outcome: SegmentOutcome
      try {
        outcome = await runtime.runSegment(runId, agentId, {
          enqueue: (ids) => addChildren(job, ids),
          ...(signal && { signal }),
        })
      } catch (error) {
        // Stopped by its run's end (a cancel): done, not to be tried again.
        const run = await readRunRecord(runtime.store, runId)
        if (run && run.status !== 'running') return { agentId, kind: 'ended', status: run.status }
        return segmentFailed(job, token, error)
      }
      if (outcome.kind === 'waiting' && outcome.on === 'dependencies')
        await awaitDependencies(job, token, settledBefore)
      // A worker with the definition took it, its dependencies settled: a later wait starts afresh.
      const { missingDefinitionSince, dependenciesPendingSince } = job.data
      if (missingDefinitionSince !== undefined || dependenciesPendingSince !== undefined)
        await job.updateData(withoutWaits(job.data))
      if (dependenciesPendingSince !== undefined) await redis.srem(waitingKey(runId), job.id!)
      if (outcome.kind === 'settled') {
        await wakeDependents(runId)
        return { agentId, kind: 'settled', status: outcome.result.status }
      }
      if (outcome.on === 'input') return { agentId, kind: 'waiting', on: 'input' }
      // A waiting parent holds no lock and no slot; BullMQ runs it again when its children are done.
      if (await job.moveToWaitingChildren(token!)) throw new WaitingChildrenError()
      if (await blockedOnChildren(job)) return { agentId, kind: 'waiting', on: 'input' }
    }
    throw new Error(`agent ${agentId} of run ${runId} made no progress in ${maxRounds} rounds`)
  }

  // The segments running here by run: a cancelled run's are aborted (`cancelRun` publishes its id).
  const running = new Map<string, Set<string>>()
  const track = async (job: Job<SegmentJobData>, token?: string, signal?: AbortSignal) => {
    const { runId } = (job.data ?? {}) as Partial<SegmentJobData>
    const jobs = typeof runId === 'string' ? (running.get(runId) ?? new Set<string>()) : undefined
    if (jobs) running.set(runId!, jobs.add(job.id!))
    try {
      return await process(job, token, signal)
    } finally {
      jobs?.delete(job.id!)
      if (jobs?.size === 0 && running.get(runId!) === jobs) running.delete(runId!)
    }
  }
  const cancels = ownRedis(connection)
  cancels.on('error', onError)
  cancels.on('message', (_channel: string, runId: string) => {
    for (const id of running.get(runId) ?? []) worker.cancelJob(id, `run ${runId} was cancelled`)
  })
  cancels.subscribe(cancelChannel(queue)).catch(onError)

  const worker = new Worker<SegmentJobData, SegmentJobResult>(queueName, track, {
    connection,
    concurrency: options.concurrency ?? 10,
    lockDuration: options.lockDuration ?? 60_000,
    stalledInterval: options.stalledInterval ?? 30_000,
    maxStalledCount: options.maxStalledCount ?? 2,
    autorun: options.autorun ?? true,
  })
  worker.on('error', onError)
  // A job whose lock could not be renewed (an event loop blocked past lockDuration) may already
  // run on another worker: its segment here stops, and writes nothing more.
  worker.on('lockRenewalFailed', (jobIds) => {
    for (const id of jobIds) worker.cancelJob(id, 'the job lost its lock: another worker may run it')
  })
  worker.on('failed', (job, error) => {
    if (job) void failRunOf(job, error.message).catch(onError)
  })

  /**
   * A job out of attempts (or stalled too often) ends its run rather than leave it running forever;
   * only a job of an agent of the run does: one that names no such agent fails alone.
   */
  const failRunOf = async (job: Job<SegmentJobData>, message: string) => {
    if (jobDataProblem(job.data) || !(await job.isFailed())) return
    const { runId, agentId } = job.data
    if (await readAgentRecord(runtime.store, runId, agentId)) await failRun(runtime.store, runId, message)
  }

  return {
    worker,
    async close(force = false) {
      // With Redis away no segment can finish, and BullMQ's graceful close waits for it without
      // end: a SIGTERM handler awaiting `close()` would never exit.
      await worker.close(force || redis.status !== 'ready')
      unshare?.()
      redis.disconnect()
      cancels.disconnect()
      await Promise.all([queue.close(), limits?.close()])
    },
  }
}

/**
 * Refuses a runtime that is none, and counts and durations that are no numbers, before any
 * connection opens: BullMQ refused a bad concurrency only after the worker's clients were open,
 * and took a negative lock or a NaN retry without a word.
 */
function checkWorkerOptions(options: CreateWorkerOptions): void {
  checkOptions('createWorker', options, workerOptionNames)
  checkQueueCall('createWorker', options, false)
  const refuse = (name: string, expected: string, value: unknown) => {
    const got = typeof value === 'string' ? JSON.stringify(value) : String(value)
    throw new InvalidInputError(`createWorker: ${name} must be ${expected}, got ${got}`)
  }
  if (typeof options?.runtime?.runSegment !== 'function')
    refuse('runtime', 'a Runtime made by createRuntime', options?.runtime)
  const counts = { concurrency: 1, maxStalledCount: 0 } as const
  for (const [name, least] of Object.entries(counts)) {
    const value = options[name as keyof typeof counts]
    if (value !== undefined && !(Number.isInteger(value) && value >= least))
      refuse(name, `a whole number, ${least} or more`, value)
  }
  // A wait for a missing definition may be 0 (fail at once) or Infinity (never).
  const durations = {
    lockDuration: 'more than 0',
    stalledInterval: 'more than 0',
    dependencyRetryMs: 'more than 0',
    missingDefinitionWaitMs: '0 or more',
  } as const
  for (const [name, range] of Object.entries(durations)) {
    const value: unknown = options[name as keyof typeof durations]
    if (value === undefined) continue
    const ok =
      typeof value === 'number' && (range === '0 or more' ? value >= 0 : value > 0 && Number.isFinite(value))
    if (!ok) refuse(name, `a number of ms, ${range}`, value)
  }
}

async function failRun(store: RunStore, runId: string, message: string): Promise<void> {
  const record = await readRunRecord(store, runId)
  if (record?.status !== 'running') return
  await store.saveRun({
    ...record,
    status: 'failed',
    updatedAt: Date.now(),
    error: { name: 'CohortError', code: 'JOB_FAILED', message },
  })
}

/**
 * The runtime lacks what an agent the segment restores needs: its definition, or the tool its
 * next action calls (an agent that waited for approval across a deploy that added the tool).
 * Told by the record field the restore refuses (`AgentRegistry.restore`), not by its message.
 */
function lacksDefinition(error: unknown): error is SnapshotError {
  return (
    error instanceof SnapshotError && (error.field === 'name' || error.field === 'snapshot.context.pending')
  )
}

/** A job's data without its waits (for a definition, for dependencies), which are that job's own. */
function withoutWaits({
  missingDefinitionSince: _,
  dependenciesPendingSince: __,
  ...data
}: SegmentJobData): SegmentJobData {
  return data
}

/** A job that waits is tried again after as long as it has waited, from `first` up to `most`. */
function waitAgainMs(waited: number, first: number, most: number): number {
  return Math.min(Math.max(waited, first), most)
}
