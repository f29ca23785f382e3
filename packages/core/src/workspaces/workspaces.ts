import { createHash } from 'node:crypto'
import { cp, mkdir, readdir, readFile, rename, rm, stat } from 'node:fs/promises'
import path from 'node:path'
import { InvalidInputError } from '../errors.js'
import { assertRunId } from '../persistence/codec.js'
import { isValidAgentId } from '../persistence/records.js'

export interface WorkspaceOptions {
  /** Folder holding `<runId>/<agentId>` workspaces (default `workspaces`). */
  root?: string
  /** A folder copied into every new workspace: the common base that conflicts are computed against. */
  base?: string
}

/** A file changed by more than one agent of a parallel group, against the common base. */
export interface Conflict {
  file: string
  agents: string[]
}

/**
 * One directory per agent, created on first use as a copy of the base. Agents of a parallel
 * group each see only their own; when the group settles, files changed in more than one of
 * them are reported as conflicts.
 */
export class Workspaces {
  readonly root: string
  readonly base: string | undefined
  /**
   * Per run in memory: its workspaces made, the base as its conflicts compare against it, and the
   * files changed by agents that have ended (their workspaces change no more).
   */
  private readonly runs = new Map<
    string,
    {
      ready: Map<string, Promise<string>>
      baseHashes?: Promise<Map<string, string>>
      ended: Map<string, Promise<string[]>>
    }
  >()

  constructor(options: WorkspaceOptions = {}) {
    this.root = path.resolve(options.root ?? 'workspaces')
    this.base = options.base === undefined ? undefined : path.resolve(options.base)
    if (this.base && (this.root === this.base || this.root.startsWith(`${this.base}${path.sep}`))) {
      throw new InvalidInputError(
        `the workspaces (${this.root}) are inside their base (${this.base}): each would hold a copy of itself; keep them apart`,
      )
    }
  }

  pathOf(runId: string, agentId: string): string {
    // Both name folders under the root: neither may lead out of it.
    assertRunId(runId)
    if (!isValidAgentId(agentId)) throw new InvalidInputError(`invalid agent id ${JSON.stringify(agentId)}`)
    return path.join(this.root, runId, agentId)
  }

  /** The agent's workspace, created (and filled from the base) the first time. */
  ensure(runId: string, agentId: string): Promise<string> {
    const dir = this.pathOf(runId, agentId)
    const { ready } = this.runOf(runId)
    let made = ready.get(dir)
    if (!made) {
      // The base as the run's first workspace copies it is what conflicts compare against, though
      // it changes while the run goes on.
      made = this.hashesOfBase(runId).then(() => this.create(dir))
      ready.set(dir, made)
    }
    return made
  }

  /**
   * The agent's workspace made as a copy of another run's agent's (a continued session, so that
   * it goes on with its files) when that one exists; else it is made from the base on first use.
   * One that already exists (a run resumed) is kept as it is.
   */
  async copyInto(runId: string, agentId: string, from: { runId: string; agentId: string }): Promise<void> {
    const source = this.pathOf(from.runId, from.agentId)
    if (!(await exists(source))) return
    const dir = this.pathOf(runId, agentId)
    const made = this.hashesOfBase(runId).then(() => this.create(dir, source))
    this.runOf(runId).ready.set(dir, made)
    await made
  }

  /**
   * Lets go of what is kept for a run that left memory (it ended, or was detached): a server
   * runs for months, and the base may have changed before the next run reads it again.
   */
  forget(runId: string): void {
    this.runs.delete(runId)
  }

  private runOf(runId: string) {
    let run = this.runs.get(runId)
    if (!run) {
      run = { ready: new Map(), ended: new Map() }
      this.runs.set(runId, run)
    }
    return run
  }

  /**
   * Files of the group's workspaces that differ from the base in more than one of them. Those of
   * `ended` agents are read once: a parent that waits for its children one at a time compares each
   * new one with them without reading them all again.
   */
  async conflicts(
    runId: string,
    agentIds: readonly string[],
    ended: ReadonlySet<string> = new Set(),
  ): Promise<Conflict[]> {
    const byFile = new Map<string, string[]>()
    const run = this.runOf(runId)
    for (const agentId of agentIds) {
      let changed = run.ended.get(agentId)
      if (!changed) {
        changed = this.changedIn(runId, agentId)
        if (ended.has(agentId)) run.ended.set(agentId, changed)
      }
      for (const file of await changed) {
        const agents = byFile.get(file) ?? []
        agents.push(agentId)
        byFile.set(file, agents)
      }
    }
    return [...byFile]
      .filter(([, agents]) => agents.length > 1)
      .map(([file, agents]) => ({ file, agents }))
      .sort((a, b) => a.file.localeCompare(b.file))
  }

  private async changedIn(runId: string, agentId: string): Promise<string[]> {
    const dir = this.pathOf(runId, agentId)
    return (await exists(dir)) ? this.changedFiles(dir, runId) : []
  }

  /**
   * Paths (relative, `/`-separated) added, changed or removed against the base, as the run
   * `runId` first read it (as it is now, without one).
   */
  async changedFiles(dir: string, runId?: string): Promise<string[]> {
    const base = await this.hashesOfBase(runId)
    const own = await hashTree(dir)
    const changed = new Set<string>()
    for (const [file, hash] of own) if (base.get(file) !== hash) changed.add(file)
    for (const file of base.keys()) if (!own.has(file)) changed.add(file)
    return [...changed].sort()
  }

  private async create(dir: string, from = this.base): Promise<string> {
    if (await exists(dir)) return dir
    const temp = `${dir}.${process.pid}.tmp`
    await rm(temp, { recursive: true, force: true })
    await mkdir(path.dirname(dir), { recursive: true })
    // Links as they are: a relative one points into the workspace, not back into the base.
    if (from) await cp(from, temp, { recursive: true, verbatimSymlinks: true })
    else await mkdir(temp)
    // A half-copied workspace is never seen under the agent's name.
    await rename(temp, dir)
    return dir
  }

  private hashesOfBase(runId: string | undefined): Promise<Map<string, string>> {
    const hash = () => (this.base ? hashTree(this.base) : Promise.resolve(new Map<string, string>()))
    if (runId === undefined) return hash()
    const run = this.runOf(runId)
    run.baseHashes ??= hash()
    return run.baseHashes
  }
}

async function hashTree(root: string): Promise<Map<string, string>> {
  const hashes = new Map<string, string>()
  const entries = await readdir(root, { recursive: true, withFileTypes: true })
  for (const entry of entries) {
    if (!entry.isFile()) continue
    const full = path.join(entry.parentPath, entry.name)
    const relative = path.relative(root, full).split(path.sep).join('/')
    hashes.set(
      relative,
      createHash('sha1')
        .update(await readFile(full))
        .digest('hex'),
    )
  }
  return hashes
}

async function exists(target: string): Promise<boolean> {
  try {
    await stat(target)
    return true
  } catch {
    return false
  }
}
