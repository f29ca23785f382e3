import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process'
import { nanoid } from 'nanoid'
import { z } from 'zod'
import { errorMessage, ModelError } from '../errors.js'
import { isActionName } from '../protocol/actions.js'
import { extractJson } from '../protocol/extract-json.js'
import { maxReplyChars } from '../protocol/parse-actions.js'
import { tokensOfText } from '../scheduler/estimate-tokens.js'
import { commandTokenVariable, forgetCommand, noteCommand, stopLeftoverCommand } from './leftover-command.js'
import type { ProcessRecord } from './process-record.js'
import type { ChatModel, ModelReply, ModelRequest, TokenUsage } from './types.js'

export interface CommandModelOptions {
  /** The program to run (never through a shell: model text is passed as data, not code). */
  command: string
  /** Its arguments; an element equal to `{prompt}` is replaced by the prompt. */
  args?: string[]
  env?: Record<string, string>
  /** The process tree is killed past this (default 10 minutes). */
  timeoutMs?: number
  /** Give the prompt on stdin (default) or only through `{prompt}` in `args`. */
  input?: 'stdin' | 'argument'
  name?: string
  /**
   * Reads what the command printed, for a command that reports its own token usage or cost (a
   * coding assistant's JSON output): the reply's text (default: stdout) and the usage and cost.
   * Without usage, it is estimated from the prompt and the reply (about four characters a
   * token), so that token budgets hold for process agents too.
   */
  readOutput?: (output: { stdout: string; stderr: string }) => CommandOutput
}

/** What `readOutput` finds in a command's output. */
export interface CommandOutput {
  text?: string | undefined
  usage?: TokenUsage | undefined
  cost?: number | undefined
}

const commandOutputSchema = z.strictObject({
  text: z.string().optional(),
  usage: z
    .strictObject({ promptTokens: z.number().int().min(0), completionTokens: z.number().int().min(0) })
    .optional(),
  cost: z.number().min(0).optional(),
})

export type { ProcessRecord }

const stderrTailChars = 2_000

/** How long output is still read after a command exited, before its pipes are closed. */
const exitGraceMs = 200

/**
 * An agent whose turn runs an external command (a coding assistant's CLI, a script) in the
 * agent's own workspace. Its stdout is the reply: actions when it holds an action JSON,
 * otherwise plain text taken as the agent's final result. A follow-up turn of the same agent
 * runs in the same workspace.
 */
export function commandModel(options: CommandModelOptions): ChatModel {
  const timeoutMs = options.timeoutMs ?? 600_000
  return {
    name: options.name ?? `command:${options.command}`,
    async complete(request) {
      if (!request.workspace) throw new ModelError('commandModel needs a runtime with workspaces')
      const workspace = await request.workspace()
      await stopLeftoverCommand(workspace)
      const prompt = promptOf(request)
      const args = (options.args ?? []).map((arg) => (arg === '{prompt}' ? prompt : arg))
      const token = nanoid()
      let noted: Promise<void> = Promise.resolve()
      const outcome = await runProcess(options.command, args, {
        cwd: workspace,
        env: {
          ...process.env,
          ...options.env,
          COHORT_RUN_ID: request.runId,
          COHORT_AGENT_ID: request.agent.id,
          COHORT_TURN: String(request.turn),
          COHORT_WORKSPACE: workspace,
          [commandTokenVariable]: token,
        },
        stdin: options.input === 'argument' ? '' : prompt,
        timeoutMs,
        signal: request.signal,
        onStart: (pgid) => {
          noted = noteCommand(workspace, { pgid, token }).catch(() => {})
        },
      }).finally(() => noted.then(() => forgetCommand(workspace, token)))
      const record: ProcessRecord = {
        turn: request.turn,
        command: options.command,
        exitCode: outcome.exitCode,
        signal: outcome.signal,
        durationMs: outcome.durationMs,
        stderrTail: outcome.stderr.slice(-stderrTailChars),
        workspace,
      }
      if (outcome.overflowed) {
        throw new ModelError(
          `command ${options.command} printed more than ${maxReplyChars} characters, the most a reply may hold; it was stopped`,
          { process: record },
        )
      }
      if (outcome.timedOut) {
        throw new ModelError(
          `command ${options.command} timed out after ${timeoutMs} ms; its process tree was killed`,
          { process: record },
        )
      }
      if (outcome.exitCode !== 0) {
        const tail = record.stderrTail.trim().split('\n').slice(-5).join('\n')
        throw new ModelError(
          `command ${options.command} exited with ${outcome.exitCode === null ? `signal ${outcome.signal}` : `code ${outcome.exitCode}`}${tail ? `: ${tail}` : ''}`,
          { process: record },
        )
      }
      const read = readOutput(options, outcome, record)
      const text = read.text ?? outcome.stdout
      const usage = read.usage ?? {
        promptTokens: tokensOfText(prompt.length),
        completionTokens: tokensOfText(text.length),
      }
      return {
        ...toReply(text),
        usage,
        ...(read.usage === undefined && { usageEstimated: true }),
        ...(read.cost !== undefined && { cost: read.cost }),
        process: record,
      }
    },
  }
}

/** What the option `readOutput` makes of the output, checked: a slip in it fails the turn naming the field. */
function readOutput(
  options: CommandModelOptions,
  outcome: ProcessOutcome,
  record: ProcessRecord,
): CommandOutput {
  if (!options.readOutput) return {}
  let read: unknown
  try {
    read = options.readOutput({ stdout: outcome.stdout, stderr: outcome.stderr })
  } catch (error) {
    throw new ModelError(`readOutput of command ${options.command} threw: ${errorMessage(error)}`, {
      cause: error,
      process: record,
    })
  }
  if (read instanceof Promise) {
    // What it resolves to would be lost: the turn ends with the command.
    read.catch(() => {})
    throw new ModelError(
      `readOutput of command ${options.command} returned a promise; it must return { text?, usage?, cost? } at once (read stdout synchronously)`,
      { process: record },
    )
  }
  const checked = commandOutputSchema.safeParse(read)
  if (checked.success) return checked.data
  const issue = checked.error.issues[0]!
  throw new ModelError(
    `readOutput of command ${options.command} returned ${issue.path.join('.') || 'a value'}: ${issue.message}; expected { text?: string, usage?: { promptTokens, completionTokens }, cost?: number }`,
    { process: record },
  )
}

/** The first turn gets the task; later turns get what arrived since the agent's last reply. */
function promptOf(request: ModelRequest): string {
  const lastReply = request.messages.findLastIndex((message) => message.role === 'assistant')
  const fresh = request.messages.slice(lastReply + 1).filter((message) => message.role !== 'system')
  return fresh.map((message) => message.content).join('\n\n')
}

function toReply(stdout: string): ModelReply {
  const json = extractJson(stdout)
  // JSON that is not actions (a list of numbers, of findings) is part of a plain-text answer.
  const isAction =
    json.found &&
    (Array.isArray(json.value)
      ? json.value.length > 0 && json.value.every(isActionObject)
      : isActionObject(json.value))
  if (isAction) return { text: stdout }
  // Lines end as on every other system: a command writing CRLF leaves no \r in its result.
  return { text: JSON.stringify({ action: 'finish', result: stdout.replaceAll('\r\n', '\n').trim() }) }
}

/** An object naming one of the protocol's actions: `{"action": "login"}` in a log is text. */
function isActionObject(value: unknown): boolean {
  return typeof value === 'object' && value !== null && isActionName((value as { action?: unknown }).action)
}

interface ProcessOutcome {
  stdout: string
  stderr: string
  exitCode: number | null
  signal: string | null
  durationMs: number
  timedOut: boolean
  /** Stopped for printing more than a reply may hold. */
  overflowed: boolean
}

function runProcess(
  command: string,
  args: string[],
  options: {
    cwd: string
    env: NodeJS.ProcessEnv
    stdin: string
    timeoutMs: number
    signal: AbortSignal
    /** Told the process group's id once the command runs. */
    onStart: (pgid: number) => void
  },
): Promise<ProcessOutcome> {
  return new Promise((resolve, reject) => {
    const started = performance.now()
    // Its own process group, so a timeout or a cancel kills everything it started.
    let child: ChildProcessWithoutNullStreams
    try {
      child = spawn(command, args, { cwd: options.cwd, env: options.env, detached: true, stdio: 'pipe' })
    } catch (error) {
      // Thrown at once, not emitted: arguments past the system's limit (E2BIG), most often a long `{prompt}`.
      const code = (error as NodeJS.ErrnoException).code
      const hint =
        code === 'E2BIG' ? ': its arguments are too long for the system; give the prompt on stdin' : ''
      return reject(
        new ModelError(`cannot start command ${command}: ${(error as Error).message}${hint}`, {
          cause: error,
        }),
      )
    }
    if (child.pid !== undefined) options.onStart(child.pid)
    let stdout = ''
    let stderr = ''
    let timedOut = false
    const killTree = () => {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL')
      } catch {
        // Already gone.
      }
    }
    // Output ends when the command exits, though something it started in the background keeps
    // the pipes open: what is written by then is read in the grace, and the pipes are closed.
    let grace: NodeJS.Timeout | undefined
    const closePipes = () => {
      child.stdout.destroy()
      child.stderr.destroy()
    }
    child.on('exit', () => {
      grace = setTimeout(closePipes, exitGraceMs)
    })
    const timer = setTimeout(() => {
      timedOut = true
      killTree()
      // A process that left the group (setsid) may still hold them.
      grace ??= setTimeout(closePipes, exitGraceMs)
    }, options.timeoutMs)
    const onAbort = () => {
      killTree()
      grace ??= setTimeout(closePipes, exitGraceMs)
    }
    options.signal.addEventListener('abort', onAbort, { once: true })
    // Decoded as text across chunks: a character split between two reads stays whole.
    child.stdout.setEncoding('utf8')
    child.stderr.setEncoding('utf8')
    let overflow = false
    child.stdout.on('data', (chunk: string) => {
      if (overflow) return
      stdout += chunk
      // No reply can be longer: stopped here, rather than read on until memory runs out.
      if (stdout.length > maxReplyChars) {
        overflow = true
        killTree()
      }
    })
    child.stderr.on('data', (chunk: string) => {
      stderr = (stderr + chunk).slice(-64_000)
    })
    child.stdin.on('error', () => {})
    child.stdin.end(options.stdin)
    child.on('error', (error) => {
      clearTimeout(timer)
      options.signal.removeEventListener('abort', onAbort)
      reject(new ModelError(`cannot start command ${command}: ${error.message}`, { cause: error }))
    })
    child.on('close', (exitCode, signal) => {
      clearTimeout(timer)
      clearTimeout(grace)
      // A turn's processes end with it: one it left in the background would outlive the run.
      killTree()
      options.signal.removeEventListener('abort', onAbort)
      if (options.signal.aborted) return reject(options.signal.reason)
      resolve({
        stdout,
        stderr,
        exitCode,
        signal,
        durationMs: Math.round(performance.now() - started),
        timedOut,
        overflowed: overflow,
      })
    })
  })
}
