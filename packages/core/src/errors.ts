import type { ProcessRecord } from './models/process-record.js'
import { renderValue } from './protocol/render-value.js'

/** Every error Cohort raises is a `CohortError` with a stable `code` a caller can switch on. */
export class CohortError extends Error {
  readonly code: string
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = new.target.name
    this.code = code
  }
}

/** A model reply that could not be understood, after every repair was used up. */
export class ParseError extends CohortError {
  constructor(message: string) {
    super('PARSE_ERROR', message)
  }
}

/** A limit (depth, agents, children per launch, steps, budget) was reached. */
export class LimitExceededError extends CohortError {
  readonly limit: string
  constructor(limit: string, message: string) {
    super('LIMIT_EXCEEDED', message)
    this.limit = limit
  }
}

/**
 * An agent ended in `failed`; `agentId` names it and `cause` carries the original reason, a typed
 * error (`TimeoutError`, `LimitExceededError`, …) whose `code` says what kind of failure it was.
 */
export class AgentFailedError extends CohortError {
  readonly agentId: string
  constructor(agentId: string, message: string, options?: { cause?: unknown }) {
    // "agent a failed: timed out after 50 ms", not "agent a failed: agent a timed out after 50 ms".
    const subject = `agent ${agentId} `
    const reason = message.startsWith(subject) ? message.slice(subject.length) : message
    super('AGENT_FAILED', `agent ${agentId} failed: ${reason}`, options)
    this.agentId = agentId
  }
}

/** The run or an agent was cancelled. */
export class CancelledError extends CohortError {
  constructor(message = 'cancelled') {
    super('CANCELLED', message)
  }
}

/** An agent ran past its wall-clock timeout. */
export class TimeoutError extends CohortError {
  constructor(message: string) {
    super('TIMEOUT', message)
  }
}

/** A stored record could not be read back: `source` names the file or key, `field` the bad field. */
export class SnapshotError extends CohortError {
  readonly source: string
  readonly field: string | undefined
  constructor(source: string, message: string, field?: string) {
    super('SNAPSHOT_ERROR', `${source}: ${field ? `field "${field}": ` : ''}${message}`)
    this.source = source
    this.field = field
  }
}

/** A run another process runs (its claim on the run): ask there, or once `until` (epoch ms) has passed. */
export class RunBusyError extends CohortError {
  constructor(
    message: string,
    readonly until: number,
    /** Which run, and the process that runs it (`process 123 on host`): for a caller that words it its own way. */
    readonly busy?: { runId: string; holder: string },
  ) {
    super('RUN_BUSY', message)
  }
}

/** A run the store does not hold (or, for `cohort logs`, a run with no logs); `runId` names it. */
export class RunNotFoundError extends CohortError {
  constructor(
    readonly runId: string,
    message = `run ${runId} is not in the store`,
  ) {
    super('RUN_NOT_FOUND', message)
  }
}

/**
 * What a call was given instead of what it takes, for an error message after "got": `undefined`,
 * `null`, `an array`, `an object`, `a function`, `number 42`, `boolean true`, `the string "…"`.
 */
export function describeValue(value: unknown): string {
  if (value === undefined || value === null) return String(value)
  if (Array.isArray(value)) return 'an array'
  if (typeof value === 'string')
    return `the string ${JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value)}`
  if (typeof value === 'function') return 'a function'
  if (typeof value === 'bigint') return `bigint ${value}n`
  return typeof value === 'object' ? 'an object' : `${typeof value} ${String(value)}`
}

/**
 * Refuses an option `subject` does not take (a typo, or one this version lacks), naming it and the
 * ones it takes: ignored, it would leave the caller believing it took effect.
 */
export function refuseUnknownOptions(subject: string, options: object, known: ReadonlySet<string>): void {
  const unknown = Object.keys(options).find((key) => !known.has(key))
  if (unknown !== undefined)
    throw new InvalidInputError(
      `${subject}: unknown option "${unknown}"; options are ${[...known].join(', ')}`,
    )
}

/** "run r1 has already completed", "... has already been cancelled": why a run or agent that ended refuses a call. */
export function alreadyEnded(subject: string, status: string): string {
  return `${subject} has already ${status === 'cancelled' ? 'been cancelled' : status}`
}

/** Input from outside (run id, option, agent name, HTTP body) that is not what was expected. */
export class InvalidInputError extends CohortError {
  constructor(message: string) {
    super('INVALID_INPUT', message)
  }
}

/**
 * A model call failed (transport, status, malformed reply). `retryable` says whether a retry may help;
 * `process` is what a process agent's failed turn left behind, kept in the agent's record as a good
 * turn's is.
 */
export class ModelError extends CohortError {
  readonly status: number | undefined
  readonly retryable: boolean
  /** What a failed process turn left behind; the runtime redacts its stderr before it is kept. */
  process: ProcessRecord | undefined
  /** How many times the call was retried before it failed for good (counted in the run's metrics). */
  readonly retries: number
  /** How long the server asked to wait before a retry (its `Retry-After`), in ms. */
  readonly retryAfterMs: number | undefined
  constructor(
    message: string,
    options: {
      status?: number
      retryable?: boolean
      cause?: unknown
      process?: ProcessRecord
      retries?: number
      retryAfterMs?: number
    } = {},
  ) {
    super('MODEL_ERROR', message, { cause: options.cause })
    this.status = options.status
    this.retryable = options.retryable ?? false
    this.process = options.process
    this.retries = options.retries ?? 0
    this.retryAfterMs = options.retryAfterMs
  }
}

/** A store could not write or read. */
export class StoreError extends CohortError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('STORE_ERROR', message, options)
  }
}

/**
 * A store call's failure as the runtime reports it: a `StoreError` naming the call and the run
 * (`store claim (run r1) failed: ECONNRESET`), the store's own error as its cause. Cohort's own
 * errors (a record that is no record, a run another process holds) are already what they are.
 */
export function storeFailure(error: unknown, call: string, runId: string): CohortError {
  if (error instanceof CohortError) return error
  return new StoreError(`store ${call} (run ${runId}) failed: ${errorMessage(error)}`, { cause: error })
}

/**
 * `run()`, its failure a `storeFailure`, bounded by `timeoutMs` (`storeTimeoutMs`): a store that
 * never answers (a table another session locked) must fail the run, not hang it and every
 * shutdown that waits for it.
 */
export async function callStore<T>(
  call: string,
  runId: string,
  timeoutMs: number,
  run: () => Promise<T>,
): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new StoreError(`store ${call} (run ${runId}) did not finish within ${timeoutMs} ms`)),
      timeoutMs,
    )
  })
  try {
    return await Promise.race([Promise.resolve().then(run), timeout])
  } catch (error) {
    throw storeFailure(error, call, runId)
  } finally {
    clearTimeout(timer)
  }
}

/** Plain-data form of an error, as it is kept in agent records and shown to parents. */
export interface ErrorInfo {
  name: string
  code: string
  message: string
  /** Which limit a `LimitExceededError` reached (`maxSteps`, `maxRunTokens`, …). */
  limit?: string
  /** A `ModelError`'s HTTP status, when the server gave one. */
  status?: number
  /** How many times a `ModelError`'s call was retried before it failed for good (kept only when > 0). */
  retries?: number
}

export function toErrorInfo(error: unknown): ErrorInfo {
  if (process.env.COHORT_DEBUG) console.error(error)
  if (error instanceof LimitExceededError)
    return { name: error.name, code: error.code, message: error.message, limit: error.limit }
  if (error instanceof ModelError) {
    const info: ErrorInfo = { name: error.name, code: error.code, message: error.message }
    if (error.status !== undefined) info.status = error.status
    if (error.retries > 0) info.retries = error.retries
    return info
  }
  if (error instanceof CohortError) return { name: error.name, code: error.code, message: error.message }
  if (error instanceof Error) return { name: error.name, code: 'ERROR', message: error.message }
  return { name: 'Error', code: 'ERROR', message: errorMessage(error) }
}

/** What was thrown, as a message: a thrown object (`throw { code: 42 }`) as its JSON, where String() says `[object Object]`. */
export function errorMessage(error: unknown): string {
  if (error instanceof Error) return error.message
  return typeof error === 'object' && error !== null ? renderValue(error) : String(error)
}

const errorClasses: Record<string, new (message: string) => CohortError> = {
  PARSE_ERROR: ParseError,
  CANCELLED: CancelledError,
  TIMEOUT: TimeoutError,
  INVALID_INPUT: InvalidInputError,
  STORE_ERROR: StoreError,
}

/**
 * Rebuilds a typed error from its plain-data form (after a restore, or across processes). With
 * `agentId`, an `AgentFailedError` for that agent whose `cause` is the rebuilt error.
 */
export function fromErrorInfo(info: ErrorInfo, agentId?: string): CohortError {
  if (agentId !== undefined)
    return new AgentFailedError(agentId, info.message, { cause: fromErrorInfo(info) })
  // A record written before `limit` was kept names no limit.
  if (info.code === 'LIMIT_EXCEEDED') return new LimitExceededError(info.limit ?? 'unknown', info.message)
  if (info.code === 'MODEL_ERROR') {
    const options: { status?: number; retries?: number } = {}
    if (info.status !== undefined) options.status = info.status
    if (info.retries !== undefined) options.retries = info.retries
    return new ModelError(info.message, options)
  }
  const ErrorClass = errorClasses[info.code]
  if (ErrorClass) return new ErrorClass(info.message)
  const error = new CohortError(info.code, info.message)
  // What was thrown (a TypeError in a tool, a SnapshotError) keeps its name, its code says the rest.
  error.name = info.name
  return error
}
