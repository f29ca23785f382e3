#!/usr/bin/env node
import { createRequire } from 'node:module'
import { CohortError, InvalidInputError, RunBusyError } from '@cohort/core'
import { Command, CommanderError, Option } from 'commander'
import { logsCommand, lsCommand, type Output, pruneCommand, showCommand } from './commands.js'
import { Home } from './home.js'
import { controlOnServer, type ServerTarget } from './remote.js'
import {
  cancelCommand,
  type ParallelFlags,
  parallelCommand,
  resumeCommand,
  runCommand,
} from './run-commands.js'
import { type ServeOptions, serveCommand } from './serve.js'

/** The CLI's folder when none is given (an empty --dir or COHORT_DIR is none). */
const defaultDir = '.cohort'

/**
 * Exit codes: 0 done, 1 the run failed or was cancelled, 2 bad usage or input (a store that cannot
 * be reached or read included), 3 the run is
 * another process's, live (`RUN_BUSY`: stop it there first, or use `--server`), 130 the run was stopped and stored
 * (Ctrl-C, SIGTERM, a closed terminal or pipe: `cohort resume` continues it).
 */
export async function main(
  argv: readonly string[],
  io: Output = { out: process.stdout, err: process.stderr },
): Promise<number> {
  let code = 0
  const program = new Command('cohort')
    .description('Run, watch and resume Cohort agent runs.')
    .addOption(
      new Option('--dir <dir>', 'folder for runs, logs and workspaces').env('COHORT_DIR').default(defaultDir),
    )
    .addOption(
      new Option(
        '--store <dir|url>',
        'where runs are kept: a folder or a postgres:// URL (default <dir>/runs)',
      ).env('COHORT_STORE'),
    )
    .version(cliVersion)
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride()
    .configureOutput({
      writeOut: (text) => io.out.write(text),
      writeErr: (text) => io.err.write(text),
    })
  let home: Home | undefined
  const common = async () => {
    const { dir, store } = program.opts<{ dir: string; store?: string }>()
    // An empty one (`COHORT_DIR=` in a .env template) is no folder given: the default, not the current folder.
    home ??= await Home.open(dir || defaultDir, store)
    return { home }
  }
  const set = (value: number) => {
    code = value
  }

  program
    .command('run')
    .description(
      'Start a run from a config module (.js/.mjs; .ts when Node runs with a TypeScript loader, as `pnpm cohort` does; default export) or a JSON config, and watch it live.',
    )
    .argument('<config>', 'config file: export default defineConfig({ agents, model, root, task })')
    .argument('[task]', "the root agent's task (default: the config's task)")
    .option('--agent <name>', 'start with this agent instead of the config root')
    .option('--run-id <id>', 'your own run id')
    .action(async (config: string, task: string | undefined, options: { agent?: string; runId?: string }) =>
      set(await runCommand(config, task, { ...(await common()), ...options }, io)),
    )

  program
    .command('parallel')
    .description('One agent per task ("A AND B AND C"), all at once, then an aggregate.')
    .argument('<tasks>', 'tasks separated by AND')
    .option('--command <program>', 'run each task as a process agent: this program, task on stdin')
    .option('--arg <value>', 'an argument of --command (repeat it)', collect)
    .option(
      '--base <dir>',
      'with --command: a folder copied into every task workspace (conflicts are found against it)',
    )
    .option(
      '--timeout <duration>',
      'stop a task that runs longer (such as 90s or 10m): it fails, the others go on',
    )
    .option('--max-parallel <n>', 'at most n tasks at work at once (default: all)')
    .option('--run-id <id>', 'your own run id')
    .action(async (tasks: string, options: ParallelFlags) =>
      set(await parallelCommand(tasks, { ...(await common()), ...options }, io)),
    )

  program
    .command('ls')
    .description('List stored runs, newest first.')
    .option('--status <list>', 'only these statuses (comma-separated: running,completed,failed,cancelled)')
    .option('--limit <n>', 'at most n runs', '20')
    .option('--json', 'print the run records as JSON')
    .action(async (options: { status?: string; limit?: string; json?: boolean }) =>
      set(await lsCommand({ ...(await common()), ...options }, io)),
    )

  program
    .command('show')
    .description('A run as a tree: states, durations, results and errors.')
    .argument('<runId>')
    .option('--json', 'print the run and its agents as JSON')
    .action(async (runId: string, options: { json?: boolean }) =>
      set(await showCommand(runId, { ...(await common()), ...options }, io)),
    )

  program
    .command('resume')
    .description('Continue a stored run (after a crash or a stop) and watch it.')
    .argument('<runId>')
    .action(async (runId: string) => set(await resumeCommand(runId, await common(), io)))

  program
    .command('approve')
    .description('Approve the tool call an agent of a stored run waits on, and continue the run.')
    .argument('<runId>')
    .argument('<agentId>', 'the agent that waits (call ids repeat across agents)')
    .argument('<callId>', 'the call id shown in the log and by `cohort show`')
    .addOption(serverOption())
    .addOption(tokenOption())
    .action(async (runId: string, agentId: string, callId: string, options: Remote) =>
      set(
        options.server
          ? await controlOnServer({ kind: 'approve', runId, agentId, callId }, target(options), io)
          : await resumeCommand(runId, await common(), io, { agentId, answer: { approve: callId } }),
      ),
    )

  program
    .command('reject')
    .description('Refuse the tool call an agent waits on (the agent is told why), and continue the run.')
    .argument('<runId>')
    .argument('<agentId>', 'the agent that waits')
    .argument('<callId>')
    .option('--reason <text>', 'what the agent is told', 'rejected by a person')
    .addOption(serverOption())
    .addOption(tokenOption())
    .action(async (runId: string, agentId: string, callId: string, options: Remote & { reason: string }) =>
      set(
        options.server
          ? await controlOnServer(
              { kind: 'reject', runId, agentId, callId, reason: options.reason },
              target(options),
              io,
            )
          : await resumeCommand(runId, await common(), io, {
              agentId,
              answer: { reject: callId, reason: options.reason },
            }),
      ),
    )

  program
    .command('answer')
    .description('Give an agent waiting for input (a tool that called ctx.suspend) its answer, and continue.')
    .argument('<runId>')
    .argument('<agentId>')
    .argument('<answer>', 'JSON, or plain text')
    .addOption(serverOption())
    .addOption(tokenOption())
    .action(async (runId: string, agentId: string, answer: string, options: Remote) => {
      const payload = parseAnswer(answer)
      set(
        options.server
          ? await controlOnServer({ kind: 'answer', runId, agentId, payload }, target(options), io)
          : await resumeCommand(runId, await common(), io, { agentId, answer: { payload } }),
      )
    })

  program
    .command('cancel')
    .description('Cancel a stored run and every agent in it.')
    .argument('<runId>')
    .addOption(serverOption())
    .addOption(tokenOption())
    .action(async (runId: string, options: Remote) =>
      set(
        options.server
          ? await controlOnServer({ kind: 'cancel', runId }, target(options), io)
          : await cancelCommand(runId, await common(), io),
      ),
    )

  program
    .command('logs')
    .description("A run's log, every agent merged by time, or one agent's.")
    .argument('<runId>')
    .option('--agent <id>', 'only this agent')
    .action(async (runId: string, options: { agent?: string }) =>
      set(await logsCommand(runId, { ...(await common()), ...options }, io)),
    )

  program
    .command('prune')
    .description(
      'Remove finished runs (completed, failed, cancelled) from the store, with their logs; running runs stay, and so do workspaces.',
    )
    .option(
      '--older-than <duration>',
      'runs that finished longer ago than this: 7d, 12h, 30m, 45s, 500ms (w: weeks)',
    )
    .option('--keep <n>', 'keep only the n runs that finished last')
    .option('--json', 'print the ids of the removed runs as JSON')
    .action(async (options: { olderThan?: string; keep?: string; json?: boolean }) =>
      set(await pruneCommand({ ...(await common()), ...options }, io)),
    )

  program
    .command('serve')
    .description('Host runs: HTTP API, WebSocket events and the web inspector. SIGTERM stores all and exits.')
    .argument('<config>', 'config file with the agents to host')
    .option('--port <port>', 'port (0: any free one)', '4000')
    .option('--host <host>', 'interface to listen on', '127.0.0.1')
    .addOption(tokenOption('the token every request carries (default: a new random one)'))
    .option('--no-auth', 'ask for no token: only behind a proxy that authenticates')
    .option('--allow-host <name>', 'a host name the server also answers as (repeat it)', collect, [])
    .option('--allow-origin <origin>', 'an origin whose pages may call the API (repeat it)', collect, [])
    .action(async (config: string, options: ServeOptions) =>
      set(await serveCommand(config, { ...(await common()), ...options }, io)),
    )

  // Commander's own `help` exits 2 even when it helps, and answers an unknown name with the general help alone.
  program.helpCommand(false)
  program
    .command('help')
    .description('Help for a command, or the commands.')
    .argument('[command]')
    .action((name: string | undefined) => {
      const command = name === undefined ? program : program.commands.find((c) => c.name() === name)
      if (!command) {
        const names = program.commands.map((c) => c.name()).join(', ')
        throw new InvalidInputError(`unknown command "${name}"; expected one of ${names}`)
      }
      command.outputHelp()
    })

  try {
    await program.parseAsync(argv, { from: 'user' })
  } catch (error) {
    if (error instanceof CommanderError) {
      return error.code === 'commander.helpDisplayed' || error.code === 'commander.version' ? 0 : 2
    }
    if (error instanceof CohortError) {
      io.err.write(`cohort: ${error instanceof RunBusyError ? runBusyMessage(error) : error.message}\n`)
      if (error.code === 'RUN_BUSY') return 3
      // A run's own failure is told by its command (1); a store that cannot be reached or read is the setting's, as a bad flag is.
      return ['INVALID_INPUT', 'RUN_NOT_FOUND', 'STORE_ERROR'].includes(error.code) ? 2 : 1
    }
    io.err.write(`cohort: ${(error as Error)?.stack ?? String(error)}\n`)
    return 1
  } finally {
    // A PostgreSQL store holds a pool that would keep the process alive.
    await home?.close()
  }
  return code
}

/**
 * RUN_BUSY as the command line can act on it: the process that runs the run is live (its claim
 * is renewed), and in a plain `cohort run` nothing can be answered; it must stop first.
 */
function runBusyMessage(error: RunBusyError): string {
  if (!error.busy) return error.message
  const { runId, holder } = error.busy
  return `run ${runId} is running in ${holder}, live: stop it there first (Ctrl-C in a \`cohort run\` or \`cohort resume\` stores it), then run this again; if that process is a \`cohort serve\`, send this to it with --server and the link it printed`
}

/** The version of this package, as it was installed. */
const cliVersion = (createRequire(import.meta.url)('../package.json') as { version: string }).version

type Remote = { server?: string; token?: string }

/** A running `cohort serve` hosts the run: the control goes to it rather than continuing the run here. */
function serverOption(): Option {
  return new Option(
    '--server <url>',
    'send this to the `cohort serve` that hosts the run (its address, or the link it printed)',
  ).env('COHORT_SERVER')
}

function tokenOption(description = 'the token of that server (the one in the link it printed)'): Option {
  return new Option('--token <token>', description).env('COHORT_TOKEN')
}

function target(options: Remote): ServerTarget {
  // An empty COHORT_TOKEN is no token.
  return { server: options.server!, ...(options.token && { token: options.token }) }
}

/** A repeatable option's values, in order. */
function collect(value: string, all: string[] = []): string[] {
  return [...all, value]
}

/** An answer is JSON when it parses as JSON, else the text itself. */
function parseAnswer(text: string): unknown {
  try {
    return JSON.parse(text)
  } catch {
    return text
  }
}
