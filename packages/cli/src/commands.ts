import { readdir, readFile, rm } from 'node:fs/promises'
import path from 'node:path'
import {
  assertRunId,
  consoleColors,
  hasBounds,
  InvalidInputError,
  type RunFilter,
  RunNotFoundError,
  type RunRetention,
} from '@cohort/core'
import { durationMs, positiveInt, statuses } from './flags.js'
import type { Home } from './home.js'
import { storeOfRun } from './launch.js'
import { formatMs, renderTree, summaryNode, taskLine } from './tree.js'
import { runView } from './views.js'

export interface Output {
  out: NodeJS.WriteStream
  err: NodeJS.WriteStream
}

export interface CommonOptions {
  home: Home
}

export async function lsCommand(
  options: CommonOptions & { status?: string; limit?: string; json?: boolean },
  io: Output,
): Promise<number> {
  const { home } = options
  const filter: RunFilter = { limit: positiveInt(options.limit ?? '20', '--limit') }
  // An empty --status (an unset shell variable) is refused, not read as no filter.
  if (options.status !== undefined) filter.status = statuses(options.status)
  const runs = await home.store.listRuns(filter)
  if (options.json) {
    io.out.write(`${JSON.stringify(runs, null, 2)}\n`)
    return 0
  }
  if (runs.length === 0) {
    io.out.write(`No runs in ${home.storeName}.\n`)
    return 0
  }
  for (const run of runs) {
    const when = new Date(run.createdAt).toISOString().replace('T', ' ').slice(0, 19)
    io.out.write(`${run.id}  ${run.status.padEnd(9)}  ${when}  ${run.agent}: ${taskLine(run, 60)}\n`)
  }
  return 0
}

export async function showCommand(
  runId: string,
  options: CommonOptions & { json?: boolean },
  io: Output,
): Promise<number> {
  assertRunId(runId)
  const { home } = options
  const stored = await (await storeOfRun(home, runId)).loadRun(runId)
  if (!stored) throw home.runNotFound(runId)
  const view = runView(stored)
  if (options.json) {
    io.out.write(`${JSON.stringify(view, null, 2)}\n`)
    return 0
  }
  const { run } = view
  // A running run's record changes at its start, detach and end; its agents' at every step.
  const last =
    run.status === 'running'
      ? Math.max(run.updatedAt, ...stored.agents.map((agent) => agent.updatedAt))
      : run.updatedAt
  io.out.write(`Run ${run.id}  ${run.status}  ${run.agent}: ${taskLine(run, 80)}\n`)
  if (run.continuedFrom)
    io.out.write(`Continues run ${run.continuedFrom.runId}'s agent ${run.continuedFrom.agentId}\n`)
  io.out.write(
    `Started ${new Date(run.createdAt).toISOString()}, ${run.status === 'running' ? 'last step' : 'ended'} ${new Date(last).toISOString()} (${formatMs(last - run.createdAt)}${run.stoppedMs ? `, ${formatMs(run.stoppedMs)} of it stopped` : ''})\n\n`,
  )
  const lines = renderTree(view.agents.map(summaryNode), {
    now: last,
    colors: consoleColors(io.out),
    outcomes: true,
  })
  io.out.write(`${lines.join('\n')}\n`)
  if (run.status === 'completed') io.out.write(`\nResult: ${JSON.stringify(run.result, null, 2)}\n`)
  if (run.error) io.out.write(`\nError (${run.error.code}): ${run.error.message}\n`)
  const conflicts = stored.agents.flatMap((agent) => agent.snapshot.context.conflicts ?? [])
  if (conflicts.length > 0) {
    io.out.write(`\nConflicts: ${conflicts.map((c) => `${c.file} (${c.agents.join(', ')})`).join('; ')}\n`)
  }
  return 0
}

export async function logsCommand(
  runId: string,
  options: CommonOptions & { agent?: string },
  io: Output,
): Promise<number> {
  assertRunId(runId)
  const { home } = options
  const folder = path.join(home.logsDir, runId)
  let files: string[]
  try {
    files = (await readdir(folder)).filter((file) => file.endsWith('.log'))
  } catch {
    throw new RunNotFoundError(runId, `no logs for run ${runId} in ${home.logsDir}`)
  }
  if (options.agent) {
    const file = `${options.agent}.log`
    if (!files.includes(file)) {
      const agents = files.map((f) => f.replace(/\.log$/, '')).join(', ')
      throw new InvalidInputError(`run ${runId} has no log for agent "${options.agent}"; agents: ${agents}`)
    }
    files = [file]
  }
  // Every file's lines, merged by their timestamp (each line starts with an ISO time).
  const lines: string[] = []
  for (const file of files) {
    const text = await readFile(path.join(folder, file), 'utf8')
    lines.push(...text.split('\n').filter(Boolean))
  }
  lines.sort()
  io.out.write(lines.length > 0 ? `${lines.join('\n')}\n` : '')
  return 0
}

/**
 * Removes the finished runs past `--older-than` or `--keep` from the store, with their logs and
 * launch records; their workspaces (files the agents made) stay. Running runs are never removed.
 */
export async function pruneCommand(
  options: CommonOptions & { olderThan?: string; keep?: string; json?: boolean },
  io: Output,
): Promise<number> {
  const { home } = options
  const retention: RunRetention = {}
  if (options.olderThan !== undefined) retention.maxAgeMs = durationMs(options.olderThan, '--older-than')
  if (options.keep !== undefined) retention.maxFinishedRuns = positiveInt(options.keep, '--keep', true)
  if (!hasBounds(retention)) {
    throw new InvalidInputError(
      'prune needs --older-than <duration> (such as 7d) or --keep <n>: which finished runs to remove',
    )
  }
  if (!home.store.prune) throw new InvalidInputError(`the store ${home.storeName} cannot prune runs`)
  const removed = await home.store.prune(retention)
  for (const runId of removed) {
    await rm(path.join(home.logsDir, runId), { recursive: true, force: true })
    await rm(path.join(home.launchesDir, `${runId}.json`), { force: true })
  }
  if (options.json) {
    io.out.write(`${JSON.stringify(removed)}\n`)
    return 0
  }
  const shown = removed.length > 10 ? [...removed.slice(0, 10), `and ${removed.length - 10} more`] : removed
  io.out.write(
    `Removed ${removed.length} finished run${removed.length === 1 ? '' : 's'} from ${home.storeName}${shown.length > 0 ? `: ${shown.join(', ')}` : ''}.\n`,
  )
  return 0
}
