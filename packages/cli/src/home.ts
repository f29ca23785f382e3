import { mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { assertRunId, fileStore, InvalidInputError, RunNotFoundError, type RunStore } from '@cohort/core'
import { z } from 'zod'

/** How a run was started, so `resume` and `cancel` can rebuild its runtime later. */
const launchSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('config'), config: z.string() }),
  z.object({
    kind: z.literal('parallel'),
    tasks: z.array(z.string()).min(1),
    command: z.string().optional(),
    args: z.array(z.string()).optional(),
    base: z.string().optional(),
    /** `--timeout`: each task's wall-clock limit. */
    timeoutMs: z.number().positive().optional(),
    /** `--max-parallel`: tasks at work at once. */
    maxParallel: z.number().int().positive().optional(),
  }),
])

/** How a run was launched from the command line, kept so that `resume` can rebuild its runtime. */
export type Launch = z.infer<typeof launchSchema>

/**
 * A store named on the command line or in a config: a `postgres://` URL (`@cohort/postgres`,
 * loaded only then; `?schema=` picks the schema), or a directory for `fileStore`.
 */
export async function storeFrom(spec: string, relativeTo = process.cwd()): Promise<RunStore> {
  if (/^postgres(ql)?:\/\//.test(spec)) {
    // `?schema=name` picks the schema (default `cohort`); the rest is pg's connection string.
    const url = new URL(spec)
    const schema = url.searchParams.get('schema')
    url.searchParams.delete('schema')
    const { postgresStore } = await import('@cohort/postgres')
    return postgresStore({ connectionString: url.toString(), ...(schema && { schema }) })
  }
  // A URL of another kind (a typo such as postgress://, or redis:// that the CLI does not take)
  // would otherwise become a folder of that name.
  const scheme = /^([a-zA-Z][a-zA-Z0-9+.-]*):\/\//.exec(spec)?.[1]
  if (scheme) {
    throw new InvalidInputError(
      `--store ${scheme}://… is no store the CLI opens; expected a postgres:// (or postgresql://) URL, or a folder`,
    )
  }
  return fileStore(path.resolve(relativeTo, spec))
}

/** The CLI's folder (default `.cohort`): runs, per-agent logs, workspaces, and how each run was launched. */
export class Home {
  readonly store: RunStore
  /** Where runs are kept, for messages: a folder, or the store's kind. */
  readonly storeName: string
  readonly runsDir: string
  readonly logsDir: string
  readonly workspacesDir: string
  readonly launchesDir: string

  constructor(
    readonly dir: string,
    store?: { store: RunStore; name: string },
  ) {
    this.runsDir = path.join(dir, 'runs')
    this.logsDir = path.join(dir, 'logs')
    this.workspacesDir = path.join(dir, 'workspaces')
    this.launchesDir = path.join(dir, 'launches')
    this.store = store?.store ?? fileStore(this.runsDir)
    this.storeName = store?.name ?? this.runsDir
  }

  /** `--store` (a folder or a `postgres://` URL) over the default `<dir>/runs`. */
  static async open(dir: string, store?: string): Promise<Home> {
    // A folder not made yet is fine (the first run makes it); a file there is a wrong --dir.
    const found = await stat(dir).catch(() => undefined)
    if (found && !found.isDirectory())
      throw new InvalidInputError(
        `the cohort folder ${dir} (--dir or COHORT_DIR) is a file; expected a folder (or one to create)`,
      )
    if (!store) return new Home(dir)
    return new Home(dir, { store: await storeFrom(store), name: store.replace(/\/\/[^@/]*@/, '//') })
  }

  private readonly others = new Set<RunStore>()

  /** A store a config brought: closed with the home, so its connections do not keep the process up. */
  adopt(store: RunStore): RunStore {
    if (store !== this.store) this.others.add(store)
    return store
  }

  async close(): Promise<void> {
    await Promise.all([this.store, ...this.others].map((store) => store.close?.()))
  }

  /** A run the store does not have: said alike by every command that names a run. */
  runNotFound(runId: string): RunNotFoundError {
    return new RunNotFoundError(runId, `run ${runId} is not in ${this.storeName}`)
  }

  async saveLaunch(runId: string, launch: Launch): Promise<void> {
    assertRunId(runId)
    await writeWhole(path.join(this.launchesDir, `${runId}.json`), JSON.stringify(launch))
  }

  /**
   * Says, while `cohort serve` runs, that it hosts this folder's runs (`serve.json`: its pid and
   * address, no token); returns the undo. Other commands then send to it rather than run a run
   * it runs too.
   */
  async markServing(url: string): Promise<() => Promise<void>> {
    const file = path.join(this.dir, 'serve.json')
    await writeWhole(file, JSON.stringify({ pid: process.pid, url }))
    return () => rm(file, { force: true })
  }

  /** The `cohort serve` that hosts this folder's runs, if one is running (not this process). */
  async server(): Promise<{ pid: number; url: string } | undefined> {
    let marked: { pid?: unknown; url?: unknown }
    try {
      marked = JSON.parse(await readFile(path.join(this.dir, 'serve.json'), 'utf8'))
    } catch {
      return undefined
    }
    const { pid, url } = marked
    if (typeof pid !== 'number' || typeof url !== 'string' || pid === process.pid) return undefined
    try {
      // Signal 0 only asks whether the process is there; a server killed with -9 left its file.
      process.kill(pid, 0)
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ESRCH') return undefined
    }
    return { pid, url }
  }

  /** Refuses to run a run here that a running `cohort serve` hosts: both would run it. */
  async refuseIfServed(what: string): Promise<void> {
    const server = await this.server()
    if (!server) return
    throw new InvalidInputError(
      `cohort serve (pid ${server.pid}, ${server.url}) hosts the runs of ${this.dir}: ${what} with --server and the link it printed (or COHORT_SERVER), so that one process runs them`,
    )
  }

  async loadLaunch(runId: string): Promise<Launch> {
    assertRunId(runId)
    const file = path.join(this.launchesDir, `${runId}.json`)
    let text: string
    try {
      text = await readFile(file, 'utf8')
    } catch {
      throw new InvalidInputError(
        `run ${runId} was not started by this cohort folder (${this.dir}): no ${path.relative(process.cwd(), file)}`,
      )
    }
    const parsed = launchSchema.safeParse(JSON.parse(text))
    if (!parsed.success)
      throw new InvalidInputError(`${file} is not a launch record: ${parsed.error.issues[0]?.message}`)
    return parsed.data as Launch
  }
}

/** Writes `text` to `file` (its folder made), under a temporary name first: a reader never sees half of it. */
async function writeWhole(file: string, text: string): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true })
  await writeFile(`${file}.tmp`, text)
  await rename(`${file}.tmp`, file)
}
