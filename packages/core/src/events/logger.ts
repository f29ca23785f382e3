import { appendFile, mkdir } from 'node:fs/promises'
import path from 'node:path'
import winston from 'winston'
import Transport from 'winston-transport'
import { describeEvent, type EventCategory, type EventTone } from './describe-event.js'
import type { CohortEvent } from './types.js'

export interface LoggerOptions {
  /** Print colour-coded lines to the console (default true). */
  console?: boolean
  /** Write one log file per agent under `<dir>/<runId>/<agentId>.log`. */
  dir?: string
  /** Colours on the console; default: when its stream is a TTY and NO_COLOR is unset or empty. */
  colors?: boolean
  /** Where console lines go (default process.stdout). */
  stream?: NodeJS.WritableStream
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

interface LogInfo {
  level: string
  message: string
  category: EventCategory
  tone: EventTone
  depth: number
  elapsedMs: number
  at: number
  runId: string
  agentId?: string
  /** What the console prints, with elapsed ms, category and indentation by depth. */
  consoleLine?: string
}

/**
 * Whether lines written to `stream` get colours: when it is a terminal, and `NO_COLOR` is unset or
 * empty (no-color.org).
 */
export function consoleColors(stream: NodeJS.WritableStream): boolean {
  return (stream as { isTTY?: boolean }).isTTY === true && !process.env.NO_COLOR
}

/** The winston logger: console lines with elapsed ms, indented by depth, and per-agent files. */
export function createLogger(options: LoggerOptions = {}): Required<EventSink> {
  const stream = options.stream ?? process.stdout
  const colors = options.colors ?? consoleColors(stream)
  const paint = (code: string, text: string) => (colors ? `\u001b[${code}m${text}\u001b[0m` : text)
  const consoleLine = (info: LogInfo) => {
    const time = paint('2', `[${String(info.elapsedMs).padStart(7)} ms]`)
    const category = paint(categoryColors[info.category], info.category.padEnd(5))
    return `${time} ${category} ${'  '.repeat(info.depth)}${paint(toneColors[info.tone], info.message)}`
  }
  const transports: Transport[] = []
  if (options.console !== false) {
    transports.push(
      new winston.transports.Stream({
        stream,
        // The line is made in `handle`, where the event is typed; winston hands it back here.
        format: winston.format.printf((info) => String(info.consoleLine)),
      }),
    )
  }
  const files = options.dir ? new AgentFilesTransport(options.dir) : undefined
  if (files) transports.push(files)
  const logger = winston.createLogger({ level: 'info', transports })

  return {
    handle(event) {
      const line = describeEvent(event)
      if (!line) return
      const info: LogInfo = {
        level: line.tone === 'fail' || line.tone === 'warn' ? 'warn' : 'info',
        message: line.text,
        category: line.category,
        tone: line.tone,
        depth: 'depth' in event ? event.depth : 0,
        elapsedMs: event.elapsedMs,
        at: event.at,
        runId: event.runId,
      }
      if ('agentId' in event) info.agentId = event.agentId
      if (options.console !== false) info.consoleLine = consoleLine(info)
      logger.log(info)
    },
    async close() {
      await files?.drain()
    },
  }
}

/** One file per agent with millisecond timestamps; appends are queued per file, never blocking. */
class AgentFilesTransport extends Transport {
  private readonly queues = new Map<string, Promise<void>>()

  constructor(private readonly dir: string) {
    super()
  }

  override log(raw: unknown, callback: () => void): void {
    const info = raw as LogInfo
    const file = path.join(this.dir, info.runId, `${info.agentId ?? '_run'}.log`)
    const line = `${new Date(info.at).toISOString()} +${info.elapsedMs}ms [${info.category}] ${info.message}\n`
    // The folder is made (again) when a file's queue starts: nothing is kept per run once its lines
    // are written, in a server that logs runs for months, and a folder removed meanwhile comes back.
    const previous = this.queues.get(file) ?? mkdir(path.dirname(file), { recursive: true })
    const next = previous.then(() => appendFile(file, line)).catch(() => {})
    this.queues.set(file, next)
    void next.then(() => {
      if (this.queues.get(file) === next) this.queues.delete(file)
    })
    callback()
  }

  async drain(): Promise<void> {
    while (this.queues.size > 0) await Promise.all(this.queues.values())
  }
}
