import { appendFile, mkdir } from 'node:fs/promises'
import path from 'node:path'
import winston from 'winston'
import Transport from 'winston-transport'
import { describeValue, errorMessage, InvalidInputError, refuseUnknownOptions } from '../errors.js'
import { describeEvent, type EventCategory, type EventTone } from './describe-event.js'
import type { CohortEvent } from './types.js'

/** The winston levels the logger writes at, most severe first. */
export const logLevels = ['error', 'warn', 'info', 'debug'] as const
export type LogLevel = (typeof logLevels)[number]

export interface LoggerOptions {
  /** Print lines to the console (default true). */
  console?: boolean
  /** Write one log file per agent under `<dir>/<runId>/<agentId>.log`. */
  dir?: string
  /** Colours on the console; default: when its stream is a TTY and NO_COLOR is unset or empty. */
  colors?: boolean
  /** Where console lines go (default process.stdout). */
  stream?: NodeJS.WritableStream
  /**
   * The least severe level written, to every transport (default `'info'`). Failures, retries and
   * warnings are `warn`, other steps `info`; `debug` adds one line per streamed model token.
   */
  level?: LogLevel
  /**
   * The console's lines: `'pretty'` (default; elapsed ms, category, indented by depth) or `'json'`,
   * one object per line for log shippers: `{ time, level, run, agent?, type, message, elapsedMs }`.
   */
  format?: 'pretty' | 'json'
  /**
   * Your own winston transports, beside the console and the files. Each gets a winston info object
   * per line: `level`, `message`, `time` (ISO), `run`, `agent` (absent for run events), `type` (the
   * event type), `category`, `depth`, `elapsedMs`.
   */
  transports?: Transport[]
}

/** Receives every event of every run of a runtime. */
export interface EventSink {
  handle(event: CohortEvent): void
  /** Waits until everything handled so far is written. */
  close?(): Promise<void>
}

const toneColors: Record<EventTone, string> = {
  start: '36',
  ok: '32',
  fail: '31',
  wait: '33',
  warn: '1;33',
  info: '37',
}
const categoryColors: Record<EventCategory, string> = {
  RUN: '1;37',
  AGENT: '1;36',
  TOOL: '1;33',
  LLM: '1;35',
}

/** What every transport is given for one line: winston's info, with the fields `handle` sets. */
interface LogInfo extends winston.Logform.TransformableInfo {
  level: LogLevel
  message: string
  time: string
  run: string
  agent?: string
  type: CohortEvent['type']
  category: EventCategory
  tone: EventTone
  depth: number
  elapsedMs: number
}

const loggerOptionNames = new Set<string>([
  'console',
  'dir',
  'colors',
  'stream',
  'level',
  'format',
  'transports',
] satisfies (keyof LoggerOptions)[])
const formats = ['pretty', 'json'] as const

/**
 * Refuses options of the wrong shape, naming the field and what it takes: an unknown format
 * (`'JSON'`) would print pretty lines to a log shipper, a bad transport throw winston's plain Error.
 */
function checkLoggerOptions(options: LoggerOptions): void {
  const refuse = (message: string) => new InvalidInputError(`createLogger: ${message}`)
  if (typeof options !== 'object' || options === null || Array.isArray(options))
    throw refuse(`expected options such as { level: 'info' }, or none; got ${describeValue(options)}`)
  refuseUnknownOptions('createLogger', options, loggerOptionNames)
  const { level, format, transports, stream, dir } = options as Record<keyof LoggerOptions, unknown>
  checkOneOf('level', level, logLevels, refuse)
  checkOneOf('format', format, formats, refuse)
  for (const flag of ['console', 'colors'] as const)
    if (options[flag] !== undefined && typeof options[flag] !== 'boolean')
      throw refuse(`${flag} must be true or false, got ${describeValue(options[flag])}`)
  if (dir !== undefined && (typeof dir !== 'string' || dir === ''))
    throw refuse(`dir must be the path of the folder for log files, got ${describeValue(dir)}`)
  if (stream !== undefined && !hasMethod(stream, 'write'))
    throw refuse(`stream must be a writable stream such as process.stderr, got ${describeValue(stream)}`)
  if (transports === undefined) return
  const transport = 'an object with a log method, such as new winston.transports.File({ filename })'
  if (!Array.isArray(transports))
    throw refuse(
      `transports must be a list of winston transports (${transport}), got ${describeValue(transports)}`,
    )
  const wrong = transports.findIndex((entry) => !hasMethod(entry, 'log'))
  if (wrong !== -1)
    throw refuse(
      `transports[${wrong}] is no winston transport (${transport}); got ${describeValue(transports[wrong])}`,
    )
}

function checkOneOf(
  field: string,
  value: unknown,
  values: readonly string[],
  refuse: (message: string) => Error,
) {
  if (value === undefined || values.includes(value as string)) return
  throw refuse(
    typeof value === 'string'
      ? `${field} "${value}" is none of ${values.join(', ')}`
      : `${field} must be one of ${values.join(', ')}, got ${describeValue(value)}`,
  )
}

function hasMethod(value: unknown, name: string): boolean {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as Record<string, unknown>)[name] === 'function'
  )
}

/**
 * Whether lines written to `stream` get colours: when it is a terminal, and `NO_COLOR` is unset or
 * empty (no-color.org).
 */
export function consoleColors(stream: NodeJS.WritableStream): boolean {
  return (stream as { isTTY?: boolean }).isTTY === true && !process.env.NO_COLOR
}

/**
 * The winston logger: console lines (pretty or JSON), per-agent files and your own transports.
 * Attach it with `createRuntime({ ..., logger: createLogger() })`.
 */
export function createLogger(options: LoggerOptions = {}): Required<EventSink> {
  checkLoggerOptions(options)
  const level = options.level ?? 'info'
  const transports: Transport[] = []
  let consoleStream: NodeJS.WritableStream | undefined
  let streamWarned = false
  // A stream's 'error' with no listener ends the process (a pipe whose reader is gone: EPIPE).
  const streamFailed = (error: unknown) => {
    if (streamWarned) return
    streamWarned = true
    process.emitWarning(
      `cohort: the log's console stream cannot be written, runs go on without its lines: ${errorMessage(error)}`,
    )
  }
  if (options.console !== false) {
    const stream = options.stream ?? process.stdout
    consoleStream = stream
    stream.on('error', streamFailed)
    const line = options.format === 'json' ? jsonLine : prettyLine(options.colors ?? consoleColors(stream))
    // The fields are set in `handle`, where the event is typed; winston hands that info back here.
    transports.push(
      new winston.transports.Stream({
        stream,
        format: winston.format.printf((info) => line(info as LogInfo)),
      }),
    )
  }
  const files = options.dir ? new AgentFilesTransport(options.dir) : undefined
  if (files) transports.push(files)
  transports.push(...(options.transports ?? []))
  const logger = winston.createLogger({ level, transports })

  return {
    handle(event) {
      if (transports.length === 0) return
      const line = describeEvent(event)
      const lineLevel = levelOf(event, line.tone)
      if (!logger.isLevelEnabled(lineLevel)) return
      const info: LogInfo = {
        level: lineLevel,
        message: line.text,
        time: new Date(event.at).toISOString(),
        run: event.runId,
        type: event.type,
        category: line.category,
        tone: line.tone,
        depth: 'depth' in event ? event.depth : 0,
        elapsedMs: event.elapsedMs,
      }
      if ('agentId' in event) info.agent = event.agentId
      logger.log(info)
    },
    async close() {
      await files?.drain()
      consoleStream?.removeListener('error', streamFailed)
    },
  }
}

/** Streamed tokens are `debug`; failures, retries and warnings `warn`; the rest `info`. */
function levelOf(event: CohortEvent, tone: EventTone): LogLevel {
  if (event.type === 'model.token') return 'debug'
  return tone === 'fail' || tone === 'warn' ? 'warn' : 'info'
}

function prettyLine(colors: boolean): (info: LogInfo) => string {
  const paint = (code: string, text: string) => (colors ? `\u001b[${code}m${text}\u001b[0m` : text)
  return (info) => {
    const time = paint('2', `[${String(info.elapsedMs).padStart(7)} ms]`)
    const category = paint(categoryColors[info.category], info.category.padEnd(5))
    return `${time} ${category} ${'  '.repeat(info.depth)}${paint(toneColors[info.tone], info.message)}`
  }
}

function jsonLine(info: LogInfo): string {
  const { time, level, run, agent, type, message, elapsedMs } = info
  return JSON.stringify({ time, level, run, agent, type, message, elapsedMs })
}

/**
 * One file per agent with millisecond timestamps; appends are queued per file, never blocking. A
 * write that fails is reported once, as a process warning, and the run goes on without its line.
 */
class AgentFilesTransport extends Transport {
  private readonly queues = new Map<string, Promise<void>>()
  private warned = false

  constructor(private readonly dir: string) {
    super()
  }

  override log(raw: unknown, callback: () => void): void {
    const info = raw as LogInfo
    const file = path.join(this.dir, info.run, `${info.agent ?? '_run'}.log`)
    const line = `${info.time} +${info.elapsedMs}ms [${info.category}] ${info.message}\n`
    // The folder is made (again) when a file's queue starts: nothing is kept per run once its lines
    // are written, in a server that logs runs for months, and a folder removed meanwhile comes back.
    const previous = this.queues.get(file) ?? mkdir(path.dirname(file), { recursive: true })
    const next = previous.then(() => appendFile(file, line)).catch((error: unknown) => this.warnOnce(error))
    this.queues.set(file, next)
    void next.then(() => {
      if (this.queues.get(file) === next) this.queues.delete(file)
    })
    callback()
  }

  private warnOnce(error: unknown): void {
    if (this.warned) return
    this.warned = true
    const reason = error instanceof Error ? error.message : String(error)
    process.emitWarning(
      `cohort: log files under ${this.dir} cannot be written, runs go on without them: ${reason}`,
    )
  }

  async drain(): Promise<void> {
    while (this.queues.size > 0) await Promise.all(this.queues.values())
  }
}
