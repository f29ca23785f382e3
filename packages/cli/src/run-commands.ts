/** The commands that run a run here: `run`, `parallel`, `resume` (and `approve`, `answer` through it), `cancel`. */
import { randomUUID } from 'node:crypto'
import path from 'node:path'
import {
  type Answer,
  type Awaiting,
  assertRunId,
  CohortError,
  createLogger,
  type EventSink,
  InvalidInputError,
  type Run,
  type RunMetrics,
  type RunStore,
  readRunRecord,
  StoreError,
} from '@cohort/core'
import { existingFile, existingFolder, runnableCommand } from './checked-paths.js'
import type { CommonOptions, Output } from './commands.js'
import { configFileKinds } from './config.js'
import { positiveInt, timeoutFlag } from './flags.js'
import type { Home, Launch } from './home.js'
import { checkParallelTasks, parallelPlan, runtimeFor, splitTasks, storeOfRun } from './launch.js'
import { liveTree } from './live.js'
import { formatMs, oneLine } from './tree.js'
import { type AgentSummary, runEnded, runView } from './views.js'
import { answerCommands, refuseAnswerToApproval } from './waiting.js'

/** The signals that stop a process of the CLI, its runs stored: Ctrl-C, a service manager, the terminal closed. */
export const stopSignals = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const

/** What a stop signal while a new run is loading says: the signal's default ended the process without a word. */
const stoppedBeforeStart = 'Stopped before the run started; nothing is stored.'

/**
 * `load`, a stop signal meanwhile ending the command at once with `said` (exit 130): loading a
 * config can take a while. Only for what comes before anything of the run is stored.
 */
async function beforeStart<T>(io: Output, said: string, load: () => Promise<T>): Promise<T> {
  const onSignal = () => {
    io.err.write(`\n${said}\n`)
    process.exit(130)
  }
  for (const signal of stopSignals) process.once(signal, onSignal)
  try {
    return await load()
  } finally {
    for (const signal of stopSignals) process.off(signal, onSignal)
  }
}

/** On a terminal the live tree is drawn and the log goes to files; otherwise plain log lines. */
function makeLogger(home: Home, io: Output): EventSink {
  return createLogger({ console: !io.out.isTTY, colors: false, stream: io.out, dir: home.logsDir })
}

/** Watches a run to its end. Called right after the run starts, so it misses none of its events. */
async function follow(run: Run, io: Output, logger: EventSink, known: AgentSummary[] = []): Promise<number> {
  const stop = io.out.isTTY ? liveTree(run, io.out, known) : undefined
  // Ctrl-C, SIGTERM or a closed terminal stop the run where it is, stored: `cohort resume` continues it, `cohort cancel` ends it.
  const onSignal = () => void run.detach()
  for (const signal of stopSignals) process.once(signal, onSignal)
  // A reader that went away (`cohort run … | head`) stops it the same way, rather than leave it running unwatched.
  const onOutputError = (error: NodeJS.ErrnoException) => {
    if (error.code === 'EPIPE') onSignal()
  }
  io.out.on('error', onOutputError)
  // A run waiting on a person has nothing in flight: keep the process up, and say what it waits for.
  const keepAlive = setInterval(() => {}, 60_000)
  // Once per call, whichever tells of it first: the event, or the run as it was resumed.
  const said = new Set<string>()
  const sayWaiting = (agentId: string, awaiting: Awaiting) => {
    const { callId, kind, prompt } = awaiting
    if (said.has(`${agentId} ${callId}`)) return
    said.add(`${agentId} ${callId}`)
    const what = kind === 'approval' ? `approval of call ${callId}` : `input (${prompt})`
    const how = `${what}: Ctrl-C, then ${answerCommands(run.id, agentId, awaiting)}`
    io.err.write(`\n${agentId} waits for ${how} (or use \`cohort serve\`).\n`)
  }
  const offSuspended = run.on('agent.suspended', (event) => {
    if (event.awaiting) sayWaiting(event.agentId, event.awaiting)
  })
  // A resumed run's agents that already waited say nothing again: said here, or it would look hung.
  for (const { agentId, awaiting } of run.awaiting()) sayWaiting(agentId, awaiting)
  let code = 0
  try {
    const result = await run.result
    stop?.()
    io.out.write(`\nResult: ${JSON.stringify(result, null, 2)}\n`)
  } catch (error) {
    stop?.()
    if (error instanceof CohortError && error.code === 'DETACHED') {
      io.err.write(`\nStopped; run ${run.id} is stored. \`cohort resume ${run.id}\` continues it.\n`)
      return 130
    }
    io.err.write(
      `\nRun ${run.id} ${run.status === 'cancelled' ? 'was cancelled' : 'failed'}: ${(error as Error).message}\n`,
    )
    code = 1
  } finally {
    clearInterval(keepAlive)
    offSuspended()
    for (const signal of stopSignals) process.off(signal, onSignal)
    io.out.off('error', onOutputError)
    await logger.close?.()
  }
  io.out.write(
    `${metricsLine(run.metrics())}\nRun ${run.id}: \`cohort show ${run.id}\`, \`cohort logs ${run.id}\`\n`,
  )
  return code
}

/**
 * The run's id, known before it starts so its launch record is written first (a crash at any
 * point leaves a resumable run). An id of the user's that is taken is refused before anything is written.
 */
async function runIdFor(store: RunStore, chosen: string | undefined): Promise<string> {
  if (chosen !== undefined) assertRunId(chosen)
  const runId = chosen ?? randomUUID().replaceAll('-', '').slice(0, 16)
  // Asked of a new id too: a store that cannot be reached is said now (exit 2), with no launch
  // record left and no "run failed" for a run it never kept. An unreadable record is a run there.
  const taken = await readRunRecord(store, runId).catch((error: unknown) => {
    if (error instanceof StoreError) throw error
    return true
  })
  if (taken) {
    throw new InvalidInputError(
      `run ${runId} already exists: \`cohort resume ${runId}\`, or pick another --run-id`,
    )
  }
  return runId
}

function metricsLine(metrics: RunMetrics): string {
  // The root of a plan (`cohort parallel`) runs no task of its own: the agents counted are those that did.
  const agents = metrics.perAgent.filter((agent) => agent.name !== 'cohort-plan')
  const count = (status: string) => agents.filter((agent) => agent.status === status).length
  return `Wall ${formatMs(metrics.wallMs)}, agents busy ${formatMs(metrics.busyMs)}: speedup ${metrics.speedup}×, efficiency ${metrics.efficiency}; ${count('completed')} completed, ${count('failed')} failed, ${metrics.tokens.total} tokens`
}

export async function runCommand(
  configFile: string,
  task: string | undefined,
  options: CommonOptions & { agent?: string; runId?: string },
  io: Output,
): Promise<number> {
  const { home } = options
  const { launch, logger, hosted, agent, text, runId } = await beforeStart(
    io,
    stoppedBeforeStart,
    async () => {
      const config = await existingFile(configFile, `config ${configFile}`, configFileKinds)
      const launch: Launch = { kind: 'config', config }
      const logger = makeLogger(home, io)
      const hosted = await runtimeFor(launch, home, logger)
      const agent = options.agent ?? hosted.root
      const text = task ?? hosted.task
      if (!text)
        throw new InvalidInputError('no task: give one after the config, or set `task` in the config')
      // Checked before the launch is saved: a run that never starts leaves nothing behind.
      if (!hosted.agents.includes(agent)) {
        throw new InvalidInputError(
          `--agent "${agent}" is not an agent of the config; its agents: ${hosted.agents.join(', ')}`,
        )
      }
      return {
        launch,
        logger,
        hosted,
        agent,
        text,
        runId: await runIdFor(hosted.runtime.store, options.runId),
      }
    },
  )
  await home.saveLaunch(runId, launch)
  return follow(hosted.runtime.start(agent, text, { runId }), io, logger)
}

/** `--base`: a folder that exists and does not hold the cohort folder (each workspace would hold a copy of itself). */
async function checkedBase(base: string, home: Home): Promise<string> {
  const folder = await existingFolder(path.resolve(base), `--base ${base}`)
  const cohortDir = path.resolve(home.dir)
  if (cohortDir === folder || cohortDir.startsWith(`${folder}${path.sep}`)) {
    throw new InvalidInputError(
      `--base ${base} holds the cohort folder ${home.dir} (runs, logs, workspaces), which each workspace would copy: keep it elsewhere with --dir, or give a base without it`,
    )
  }
  return folder
}

/** The flags of `cohort parallel`, as given. */
export interface ParallelFlags {
  command?: string
  arg?: string[]
  base?: string
  timeout?: string
  maxParallel?: string
  runId?: string
}

export async function parallelCommand(
  text: string,
  options: CommonOptions & ParallelFlags,
  io: Output,
): Promise<number> {
  const { home } = options
  const launch: Launch = { kind: 'parallel', tasks: splitTasks(text) }
  // Without --command the tasks run on a model, which takes no arguments and no workspace: refused, not ignored.
  if (options.command === undefined) {
    for (const [flag, given] of [
      ['--arg', options.arg?.length],
      ['--base', options.base],
    ] as const) {
      if (given) {
        throw new InvalidInputError(
          `${flag} is for the program of --command, and no --command was given: pass --command <program>, or leave ${flag} out`,
        )
      }
    }
  }
  if (options.timeout !== undefined) launch.timeoutMs = timeoutFlag(options.timeout)
  if (options.maxParallel !== undefined)
    launch.maxParallel = positiveInt(options.maxParallel, '--max-parallel')
  if (options.command !== undefined)
    launch.command = await runnableCommand(options.command, '--command', process.cwd())
  if (options.arg?.length) launch.args = options.arg
  if (options.base) launch.base = await checkedBase(options.base, home)
  checkParallelTasks(launch)
  const logger = makeLogger(home, io)
  const { hosted, runId } = await beforeStart(io, stoppedBeforeStart, async () => {
    const hosted = await runtimeFor(launch, home, logger)
    return { hosted, runId: await runIdFor(hosted.runtime.store, options.runId) }
  })
  await home.saveLaunch(runId, launch)
  const run = hosted.runtime.runPlan(parallelPlan(launch), { runId })
  return parallelReport(run, launch, home, io, await follow(run, io, logger))
}

/**
 * After a parallel run, here or resumed: its tasks and their conflicts; exit code 1 when a task
 * failed. A run stopped before its end (Ctrl-C) has nothing to report yet.
 */
async function parallelReport(
  run: Run,
  launch: Extract<Launch, { kind: 'parallel' }>,
  home: Home,
  io: Output,
  code: number,
): Promise<number> {
  if (run.status === 'running') return code
  const failed = await printTasks(home, run.id, launch, io)
  const conflicts = run.metrics().conflicts
  // Tasks on a model have no workspaces: nothing to say about them.
  if (launch.command) {
    io.out.write(
      conflicts.length === 0
        ? 'No conflicts between the tasks’ workspaces.\n'
        : `Conflicts (files changed by more than one task): ${conflicts.map((c) => `${c.file} (${c.agents.join(', ')})`).join('; ')}\n`,
    )
  }
  if (code === 0 && failed > 0) {
    io.err.write(`${failed} task${failed === 1 ? '' : 's'} failed.\n`)
    return 1
  }
  return code
}

/** The table of a parallel run's tasks, in the order given (the aggregate last); returns how many failed. */
async function printTasks(
  home: Home,
  runId: string,
  launch: Extract<Launch, { kind: 'parallel' }>,
  io: Output,
): Promise<number> {
  const stored = await home.store.loadRun(runId)
  if (!stored) return 0
  // Not by start time: tasks started in one millisecond would come as their ids sort (task-10 before
  // task-9), and an aggregate that never started (its tasks failed) first.
  const order = parallelPlan(launch).agents.map((step) => step.id)
  const stepId = (agentId: string) => agentId.replace(/^cohort-plan\./, '')
  const tasks = runView(stored)
    .agents.filter((agent) => agent.depth === 1)
    .sort((a, b) => order.indexOf(stepId(a.id)) - order.indexOf(stepId(b.id)))
  io.out.write('\n| task | status | time | result |\n|---|---|---|---|\n')
  for (const task of tasks) {
    const outcome = task.error
      ? `error: ${task.error.message}`
      : task.status === 'completed'
        ? oneLine(task.result, 60)
        : '–'

    const wallMs = (task.endedAt ?? Date.now()) - task.startedAt
    // A task queued for a place (--max-parallel) ran for less than it took.
    const time =
      wallMs - task.busyMs > Math.max(100, wallMs / 10)
        ? `${formatMs(wallMs)} (${formatMs(task.busyMs)} at work)`
        : formatMs(wallMs)
    io.out.write(`| ${stepId(task.id)} | ${task.status} | ${time} | ${outcome.replaceAll('|', '\\|')} |\n`)
  }
  return tasks.filter((task) => task.status === 'failed').length
}

/**
 * Continues a stored run here, and watches it. With `answer`, the agent that waits on a person is given it first,
 * in the store: an answer it cannot take is refused before anything of the run runs again.
 */
export async function resumeCommand(
  runId: string,
  options: CommonOptions,
  io: Output,
  answer?: { agentId: string; answer: Answer },
): Promise<number> {
  const { home } = options
  const stopped = `Stopped before run ${runId} resumed; it is stored as it was.`
  const { agents, launch, logger, hosted } = await beforeStart(io, stopped, async () => {
    await home.refuseIfServed(answer ? 'answer it' : 'resume it')
    // The run first: one that is not there, or has ended, is said so whether or not this folder launched it.
    const stored = await (await storeOfRun(home, runId)).loadRun(runId)
    if (!stored) throw home.runNotFound(runId)
    if (stored.run.status !== 'running') {
      throw new InvalidInputError(`${runEnded(runId, stored.run.status)}; \`cohort show ${runId}\` shows it`)
    }
    const { agents } = runView(stored)
    if (answer && 'payload' in answer.answer) {
      const agent = agents.find((summary) => summary.id === answer.agentId)
      refuseAnswerToApproval(runId, answer.agentId, agent?.awaiting)
    }
    const launch = await home.loadLaunch(runId)
    const logger = makeLogger(home, io)
    return { agents, launch, logger, hosted: await runtimeFor(launch, home, logger) }
  })
  if (answer) {
    try {
      await hosted.runtime.answer(runId, answer.agentId, answer.answer)
    } catch (error) {
      await logger.close?.()
      throw error
    }
  }
  const run = await hosted.runtime.resume(runId)
  const code = await follow(run, io, logger, agents)
  return launch.kind === 'parallel' ? parallelReport(run, launch, home, io, code) : code
}

export async function cancelCommand(runId: string, options: CommonOptions, io: Output): Promise<number> {
  const { home } = options
  const record = await readRunRecord(await storeOfRun(home, runId), runId)
  if (!record) throw home.runNotFound(runId)
  if (record.status !== 'running') {
    io.out.write(`Run ${runId} is already ${record.status}.\n`)
    return 0
  }
  await home.refuseIfServed('cancel it')
  const launch = await home.loadLaunch(runId)
  const logger = createLogger({ console: false, dir: home.logsDir })
  const hosted = await runtimeFor(launch, home, logger)
  const run = await hosted.runtime.resume(runId)
  await run.cancel('cancelled with `cohort cancel`')
  await logger.close?.()
  io.out.write(`Run ${runId} cancelled.\n`)
  return 0
}
