import { randomUUID } from 'node:crypto'
import {
  type AgentRecord,
  type Answer,
  CohortError,
  InvalidInputError,
  isValidAgentId,
  isValidRunId,
  RunNotFoundError,
  type Runtime,
} from '@cohort/core'
import { type FlowJob, FlowProducer, type Job, type JobsOptions, type JobType, Queue } from 'bullmq'
import { type ConnectionInput, resolveConnection, withOwnRedis } from './connection.js'
import { checkOptions, checkQueueCall, queueOptionNames } from './options.js'

export const defaultQueueName = 'cohort'

/**
 * One job is one segment of one agent. `generation` is set when a run is enqueued (`enqueueRun`,
 * `resumeRun`) and passed to its children's jobs: the ids of one enqueue are its own, so a run
 * enqueued again (resumed, or a run id used again after its run was pruned) is not taken for
 * the jobs BullMQ keeps of an earlier one.
 */
export interface SegmentJobData {
  runId: string
  agentId: string
  generation?: string
  /** Since when (epoch ms) workers whose runtime lacks an agent definition the job needs have put it back. */
  missingDefinitionSince?: number
  /** Since when (epoch ms) the job's agent has found its dependencies unsettled: the job does no work meanwhile. */
  dependenciesPendingSince?: number
}

export type SegmentJobResult =
  | { agentId: string; kind: 'settled'; status: 'completed' | 'failed' }
  | { agentId: string; kind: 'waiting'; on: 'input' }
  /** The run had ended (`cancelRun`) while the segment ran: it stopped, and wrote nothing more. */
  | { agentId: string; kind: 'ended'; status: 'completed' | 'failed' | 'cancelled' }

/**
 * What is wrong with a job's data (a job added by hand), or undefined when it names a run and an
 * agent as the jobs `enqueueRun`, `resumeRun` and the workers add do.
 */
export function jobDataProblem(data: unknown): string | undefined {
  const { runId, agentId } = (data ?? {}) as Partial<Record<keyof SegmentJobData, unknown>>
  if (runId === undefined || agentId === undefined)
    return 'has no { runId, agentId }: expected a run id and an agent id of a stored run'
  if (!isValidRunId(runId))
    return `has run id ${JSON.stringify(runId).slice(0, 80)}: expected a run id: 1-64 letters, digits, "_" or "-"`
  if (!isValidAgentId(agentId))
    return `has agent id ${JSON.stringify(agentId).slice(0, 80)}: expected an agent id: letters, digits, "_" or "-" joined by dots`
  return undefined
}

/**
 * Deterministic, so a segment replayed after a crash adds the same child jobs again and BullMQ
 * keeps the first. BullMQ refuses ':' in custom ids; agent ids are escaped to stay distinct.
 */
export function segmentJobId(data: SegmentJobData): string {
  const agent = data.agentId.replaceAll('%', '%25').replaceAll(':', '%3A')
  return data.generation ? `${data.runId}-${agent}-g${data.generation}` : `${data.runId}-${agent}`
}

/** Kept long enough for a replayed segment to find its children's jobs by id. */
export const jobDefaults: JobsOptions = {
  attempts: 3,
  backoff: { type: 'exponential', delay: 1000 },
  removeOnComplete: { age: 7 * 24 * 3600 },
  removeOnFail: { age: 30 * 24 * 3600 },
}

export type QueueInput = ConnectionInput & {
  /** An open queue (left open); otherwise one is opened on `connection`/`url` and closed. */
  queue?: Queue
  queueName?: string
}

export async function withQueue<T>(input: QueueInput, use: (queue: Queue) => Promise<T>): Promise<T> {
  if (input.queue) return use(input.queue)
  const queue = new Queue(input.queueName ?? defaultQueueName, { connection: resolveConnection(input) })
  try {
    return await use(queue)
  } finally {
    await queue.close()
  }
}

export type EnqueueRunOptions = QueueInput & {
  runtime: Runtime
  agent: string
  task: string
  runId?: string
}

const enqueueOptionNames = [
  ...queueOptionNames,
  'runtime',
  'agent',
  'task',
  'runId',
] as const satisfies readonly (keyof EnqueueRunOptions)[]

/**
 * Writes the run and its idle root agent, then adds the root agent's job. The queue is reached
 * first: a run stored for a queue that cannot take its job would stay running with nothing to run it.
 */
export async function enqueueRun(options: EnqueueRunOptions): Promise<{ runId: string }> {
  checkOptions('enqueueRun', options, enqueueOptionNames)
  checkQueueCall('enqueueRun', options)
  return withQueue(options, async (queue) => {
    await reachQueue(queue, 'enqueueRun')
    const { runId, rootAgentId } = await options.runtime.prepareRun(
      options.agent,
      options.task,
      options.runId === undefined ? {} : { runId: options.runId },
    )
    const data: SegmentJobData = { runId, agentId: rootAgentId, generation: newGeneration() }
    await queue.add(rootAgentId, data, { ...jobDefaults, jobId: segmentJobId(data) })
    return { runId }
  })
}

/**
 * Resolves once the queue's Redis answers; rejects at its first connection error, where BullMQ's
 * clients (no cap on retries) would wait for Redis without end, and say nothing to the caller.
 * Called before a function writes anything, so a refusal leaves the store as it was.
 */
export async function reachQueue(queue: Queue, caller: string): Promise<void> {
  try {
    await answered(queue)
  } catch (error) {
    throw new CohortError(
      'QUEUE_UNREACHABLE',
      `${caller}: cannot reach the Redis of queue "${queue.name}" (${(error as Error).message}); nothing was written: start Redis, or check url/connection`,
      { cause: error },
    )
  }
}

/** The checks in flight, one a queue: calls at once on a shared queue add one error listener, not one each. */
const checks = new WeakMap<Queue, Promise<void>>()

/** Resolves once the queue's Redis answers; rejects with its first connection error. */
function answered(queue: Queue): Promise<void> {
  const inFlight = checks.get(queue)
  if (inFlight) return inFlight
  let onError!: (error: Error) => void
  const failed = new Promise<never>((_, reject) => {
    onError = reject
  })
  queue.on('error', onError)
  const ready = queue.waitUntilReady()
  ready.catch(() => {})
  const check = Promise.race([ready, failed]).then(() => undefined)
  const done = () => {
    queue.off('error', onError)
    checks.delete(queue)
  }
  check.then(done, done)
  checks.set(queue, check)
  return check
}

export type ResumeRunOptions = QueueInput & { runtime: Runtime; runId: string }

const resumeOptionNames = [
  ...queueOptionNames,
  'runtime',
  'runId',
] as const satisfies readonly (keyof ResumeRunOptions)[]

/**
 * Re-enqueues the unsettled agents of a stored run whose jobs are gone (after an answer to an
 * input request, or a Redis that lost its queue) as one flow: a parent runs after its children.
 * Refused (InvalidInputError, nothing added) while jobs of the run are live, queued or running:
 * the run would have its agents run twice.
 */
export async function resumeRun(options: ResumeRunOptions): Promise<{ runId: string; agents: number }> {
  checkOptions('resumeRun', options, resumeOptionNames)
  checkQueueCall('resumeRun', options)
  return withQueue(options, async (queue) => {
    await reachQueue(queue, 'resumeRun')
    const stored = await options.runtime.store.loadRun(options.runId)
    if (!stored) throw new RunNotFoundError(options.runId)
    if (stored.run.status !== 'running') return { runId: options.runId, agents: 0 }
    // Jobs of the run still live would run its agents beside the new ones (a resume tried again).
    const live = await liveJobsOf(queue, options.runId)
    if (live.length > 0)
      throw new InvalidInputError(
        `resumeRun: run ${options.runId} still has ${live.length} job(s) queued or running: the workers run it on; resume a run whose jobs are gone`,
      )
    const unsettled = stored.agents.filter((agent) => !isSettled(agent))
    const root = unsettled.find((agent) => agent.id === stored.run.rootAgentId)
    if (!root) return { runId: options.runId, agents: 0 }
    const generation = newGeneration()
    const node = (agent: AgentRecord): FlowJob => {
      const data: SegmentJobData = { runId: options.runId, agentId: agent.id, generation }
      const children = unsettled.filter((other) => other.parentId === agent.id).map(node)
      const opts = { ...jobDefaults, jobId: segmentJobId(data), ignoreDependencyOnFailure: true }
      return { name: agent.id, queueName: queue.name, data, opts, ...(children.length > 0 && { children }) }
    }
    const tree = node(root)
    const flows = new FlowProducer({ connection: queue.opts.connection })
    try {
      await flows.add(tree)
    } finally {
      await flows.close()
    }
    return { runId: options.runId, agents: countNodes(tree) }
  })
}

/** Unique to one enqueue of a run: the time, and a few random characters for two in one millisecond. */
function newGeneration(): string {
  return `${Date.now().toString(36)}${randomUUID().slice(0, 4)}`
}

function countNodes(node: FlowJob): number {
  return 1 + (node.children ?? []).reduce((total, child) => total + countNodes(child), 0)
}

export function isSettled(agent: AgentRecord): boolean {
  return agent.status === 'completed' || agent.status === 'failed'
}

export type AnswerRunOptions = ResumeRunOptions & { agentId: string; answer: Answer }

const answerOptionNames = [
  ...resumeOptionNames,
  'agentId',
  'answer',
] as const satisfies readonly (keyof AnswerRunOptions)[]

/** Job states in which a run still has work queued or running. */
const liveStates: JobType[] = ['active', 'wait', 'delayed', 'prioritized', 'waiting-children']

/**
 * Answers an agent that waits on a person (approve or reject its tool call, or give it input)
 * and runs the run on. The answer is written into the store (`runtime.answer`), then the run's
 * unsettled agents are enqueued again (`resumeRun`). Jobs that only wait (a parent on its
 * children, an agent on its dependencies, which may be the one answered) are removed first.
 * Refused, with nothing written, while other jobs of the run are in flight: answer once they
 * have finished.
 */
export async function answerRun(options: AnswerRunOptions): Promise<{ runId: string; agents: number }> {
  checkOptions('answerRun', options, answerOptionNames)
  checkQueueCall('answerRun', options)
  return withQueue(options, async (queue) => {
    await reachQueue(queue, 'answerRun')
    // One answer of a run at a time: answers given at once would each find no job in flight, and
    // each enqueue the whole run again (every agent, and every approved tool, once per answer).
    const lock = queue.toKey(`answering:${options.runId}`)
    const token = randomUUID()
    return withOwnRedis(options.queue?.opts.connection ?? resolveConnection(options), async (redis) => {
      if ((await redis.set(lock, token, 'PX', answerLockMs, 'NX')) !== 'OK') {
        throw new InvalidInputError(
          `run ${options.runId} is being answered by another call: answer once its jobs have finished`,
        )
      }
      try {
        await removeWaitingJobs(queue, options.runId)
        await options.runtime.answer(options.runId, options.agentId, options.answer)
        return await resumeRun({ runtime: options.runtime, runId: options.runId, queue })
      } finally {
        await redis.eval(releaseScript, 1, lock, token)
      }
    })
  })
}

/**
 * Removes the live jobs of a run when each only waits: on its children, or on dependencies
 * (which may wait on the answer, so would wait forever). Throws, removing none, when one does
 * work. Only jobs no worker holds are removed (BullMQ refuses a locked one), so no agent runs
 * in an old job beside the new ones `resumeRun` adds; jobs removed before a refusal only
 * waited, and the next answer's `resumeRun` adds them again.
 */
async function removeWaitingJobs(queue: Queue, runId: string): Promise<void> {
  const inFlight = (count: number) =>
    new InvalidInputError(
      `run ${runId} still has ${count} job(s) in flight: answer once they have finished (the agent's other work settles first)`,
    )
  const live = await liveJobsOf(queue, runId)
  const states = await Promise.all(live.map((job) => job.getState()))
  const working = live.filter(
    (job, i) =>
      states[i] !== 'waiting-children' &&
      (states[i] === 'active' || (job.data as SegmentJobData).dependenciesPendingSince === undefined),
  )
  if (working.length > 0) throw inFlight(working.length)
  for (const job of topmost(live)) {
    if ((await queue.remove(job.id!, { removeChildren: true })) !== 1) throw inFlight(live.length)
  }
}

/** The run's jobs still queued, waiting or running. */
export async function liveJobsOf(queue: Queue, runId: string): Promise<Job[]> {
  const jobs = await queue.getJobs(liveStates, 0, -1)
  return jobs.filter((job) => (job?.data as SegmentJobData | undefined)?.runId === runId)
}

/**
 * The jobs of `jobs` whose parent is not among them, to be removed with `removeChildren`: a parent
 * takes its children with it in one step, refused whole if one is locked. A child removed alone
 * would release its parent to run (BullMQ moves it to wait).
 */
export function topmost(jobs: Job[]): Job[] {
  const ids = new Set(jobs.map((job) => job.id))
  return jobs.filter((job) => !ids.has(job.parent?.id))
}

/** Long enough for an answer and its enqueue; a lock of a caller that died goes after it. */
const answerLockMs = 60_000

/** Deletes the lock only if it is still the caller's (it may have lapsed and been taken). */
const releaseScript = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`
