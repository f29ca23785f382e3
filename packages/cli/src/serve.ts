import { createLogger, InvalidInputError } from '@cohort/core'
import { existingFile } from './checked-paths.js'
import type { CommonOptions, Output } from './commands.js'
import { configFileKinds } from './config.js'
import { portNumber } from './flags.js'
import type { Launch } from './home.js'
import { runtimeFor } from './launch.js'
import { stopSignals } from './run-commands.js'
import { refusalLine, serveLine } from './serve-console.js'
import { startServer } from './server/server.js'

export interface ServeOptions {
  port: string
  host: string
  token?: string
  /** false with --no-auth. */
  auth: boolean
  allowHost: string[]
  allowOrigin: string[]
}

export async function serveCommand(
  configFile: string,
  options: CommonOptions & ServeOptions,
  io: Output,
): Promise<number> {
  const { home } = options
  // An empty COHORT_TOKEN is no token.
  const token = options.token || undefined
  if (!options.auth && token !== undefined) {
    throw new InvalidInputError(
      '--no-auth and a token (--token or COHORT_TOKEN) contradict each other: give one',
    )
  }
  const other = await home.server()
  if (other) {
    throw new InvalidInputError(
      `cohort serve (pid ${other.pid}, ${other.url}) already hosts the runs of ${home.dir}: stop it first, as two servers would both run them`,
    )
  }
  const config = await existingFile(configFile, `config ${configFile}`, configFileKinds)
  const launch: Launch = { kind: 'config', config }
  const logger = createLogger({ console: false, dir: home.logsDir })
  const hosted = await runtimeFor(launch, home, logger)
  const server = await startServer({
    runtime: hosted.runtime,
    port: portNumber(options.port),
    host: options.host,
    root: hosted.root,
    onStart: (runId) => home.saveLaunch(runId, launch),
    hosts: async (runId) => {
      const launched = await home.loadLaunch(runId).catch(() => undefined)
      return launched?.kind === 'config' && launched.config === launch.config
    },
    ...(!options.auth ? { token: false } : token !== undefined && { token }),
    allowHosts: options.allowHost,
    allowOrigins: options.allowOrigin,
    onRefused: (refusal) => io.err.write(refusalLine(refusal)),
  })
  // Subscribed before the runs in flight are resumed, so that their lines are printed too.
  const offLines = hosted.runtime.on('event', (event) => {
    const line = serveLine(event, server.url)
    if (line) io.out.write(line)
  })
  // Listened for from here, so that one that comes while the runs in flight are resumed stores them too.
  const stopped = new Promise<string>((resolve) => {
    for (const signal of stopSignals) process.once(signal, () => resolve(signal))
  })
  if (server.token === null) {
    // Off the loopback, the whole network can reach it, not only this machine's programs.
    const who = isLoopback(options.host)
      ? 'any program on this machine, and any web page it opens,'
      : `anyone who can reach ${options.host} on the network, any program on this machine and any web page it opens`
    io.err.write(
      `cohort serve: --no-auth: no token is asked for, so ${who} can start runs and approve tool calls. Use it only behind a proxy that authenticates.\n`,
    )
  }
  io.out.write(
    `cohort serve: ${server.inspectorUrl} (the inspector${server.token ? '; this link signs a browser in' : ''})\n`,
  )
  io.out.write(
    `API at ${server.url}api/runs${server.token ? ' with the header "Authorization: Bearer <the token in the link>"' : ''}; described at ${server.url}api/openapi.json\n`,
  )
  const unmark = await home.markServing(server.url)
  const { resumed, notHosted } = await server.resumeInFlight()
  if (resumed.length > 0)
    io.out.write(`Resumed ${resumed.length} run(s) that were in flight: ${resumed.join(', ')}\n`)
  if (notHosted.length > 0)
    io.out.write(
      `Left ${notHosted.length} run(s) in flight alone, started by another config or \`cohort parallel\`: ${notHosted.join(', ')}\n`,
    )
  const signal = await stopped
  io.out.write(`${signal}: storing every run and stopping…\n`)
  await server.close()
  offLines()
  await unmark()
  await logger.close?.()
  io.out.write('Stopped; `cohort serve` again resumes the runs in flight.\n')
  return 0
}

/** A host name or address only this machine reaches (`--host`). */
function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host)
}
