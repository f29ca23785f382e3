import { createHash } from 'node:crypto'
import { mkdir, open, readdir, rename, rm } from 'node:fs/promises'
import path from 'node:path'
import { describeValue, InvalidInputError, SnapshotError, StoreError } from '../errors.js'
import {
  assertAgentRecordOf,
  assertRunId,
  chunksNeeded,
  decodeAgentRecord,
  decodeRunRecord,
  encodeAgentRecordParts,
  encodeRecord,
  joinRecordParts,
} from './codec.js'
import { fileClaims } from './file-claims.js'
import { readIfExists } from './read-file.js'
import {
  type AgentRecord,
  isValidAgentId,
  type KeepingStore,
  type RunFilter,
  type RunId,
  type RunRecord,
  type RunRetention,
} from './records.js'
import {
  applyRetention,
  checkRetention,
  checkRunFilter,
  filterRuns,
  hasBounds,
  runsToPrune,
} from './run-filter.js'

export interface FileStoreOptions {
  /** fsync each file and its folder: survives power loss, not only a process crash. Slower. */
  fsync?: boolean
  /**
   * Which finished runs to keep (default: every one). Applied each time a run finishes; the store
   * reads the records of the runs it has not yet seen finished, and lists the folder.
   */
  retention?: RunRetention
}

let tempCounter = 0

/**
 * One folder per run: `run.json`, and `agents/<agent id>.json` with the agent's last messages;
 * an agent whose history has grown past `historyChunkSize` messages has the chunks before them
 * in `agents/<agent id>.history/<n>.json`, each written once. Every write goes to a temporary
 * file that is then renamed over the old one, so a crash leaves the last good record of every
 * agent. A record's chunks are written before it, and it says how many messages it has in all:
 * a chunk a crash left behind it is not read.
 */
export function fileStore(dir: string, options: FileStoreOptions = {}): KeepingStore {
  // path.resolve('') is the working directory: runs would be written among whatever is there.
  if (typeof dir !== 'string' || dir.trim() === '')
    throw new InvalidInputError(
      `fileStore: expected the path of the folder to keep runs in, such as '.cohort/runs', got ${describeValue(dir)}`,
    )
  const retention = checkRetention(options.retention)
  const root = path.resolve(dir)
  const replaceFile = async (file: string, text: string) => {
    const temp = `${file}.${process.pid}.${++tempCounter}.tmp`
    try {
      const handle = await open(temp, 'w')
      try {
        await handle.writeFile(text)
        if (options.fsync) await handle.sync()
      } finally {
        await handle.close()
      }
      await rename(temp, file)
      if (options.fsync) {
        const folder = await open(path.dirname(file), 'r')
        await folder.sync().finally(() => folder.close())
      }
    } catch (error) {
      await rm(temp, { force: true }).catch(() => {})
      throw error
    }
  }

  // A folder is made when a write finds it missing; none is remembered as made: such a set grows
  // by a run for the life of a server, and goes stale when another process (`cohort prune`,
  // rm -rf) removes a run whose id is written again.
  const writeAtomic = async (file: string, text: string) => {
    try {
      await replaceFile(file, text).catch(async (error: NodeJS.ErrnoException) => {
        if (error.code !== 'ENOENT') throw error
        await mkdir(path.dirname(file), { recursive: true })
        await replaceFile(file, text)
      })
    } catch (error) {
      throw new StoreError(`could not write ${file}: ${(error as Error).message}`, { cause: error })
    }
  }

  const runDir = (runId: string) => path.join(root, runId)

  /**
   * The text of a run's record; when there is none but its folder holds agents' records (a
   * run.json removed by hand), a SnapshotError: read as no run, its id would be taken by a new
   * run written over and among the old agents.
   */
  const readRunText = async (runId: string, file: string) => {
    const text = await readIfExists(file)
    if (text === undefined && (await readdir(path.join(runDir(runId), 'agents')).catch(() => [])).length > 0)
      throw new SnapshotError(
        file,
        `the run record is missing, and the run's folder holds its agents' records; restore run.json, or remove the folder (deleteRun) to free the id`,
      )
    return text
  }

  const removeRun = async (runId: RunId) => {
    // Moved aside in one step, then removed: a claim let go of meanwhile wrote its lock into the
    // folder under rm, whose last rmdir failed (ENOTEMPTY) and left the run half removed. Its
    // owner now finds no folder, which holds no claim. A name with a dot is never a run's.
    const aside = path.join(root, `.removing-${runId}-${process.pid}-${Math.random().toString(36).slice(2)}`)
    try {
      await rename(runDir(runId), aside)
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return
      throw error
    }
    await rm(aside, { recursive: true, force: true })
  }

  /** The names of the run folders. */
  const runFolders = async () => {
    const entries = await readdir(root, { withFileTypes: true }).catch(() => [])
    return entries
      .filter((entry) => entry.isDirectory() && !entry.name.startsWith('.'))
      .map((entry) => entry.name)
  }

  /** The run records of these folders that can be read; a folder without one is left out. */
  const readRunRecords = async (runIds: readonly string[]) => {
    const records: RunRecord[] = []
    // Read a few at a time, not one after another (2,000 runs: 400 ms) nor all at once (a file
    // descriptor each, past the process's limit in a large folder).
    let next = 0
    const reader = async () => {
      while (next < runIds.length) {
        const runId = runIds[next++]!
        const file = path.join(root, runId, 'run.json')
        const text = await readIfExists(file)
        if (text === undefined) continue
        try {
          records.push(runRecordIn(text, file, runId))
        } catch {
          // A run whose record cannot be read is still on disk for `loadRun` to report; a listing skips it.
        }
      }
    }
    await Promise.all(Array.from({ length: Math.min(listReaders, runIds.length) }, reader))
    return records
  }

  const listRuns = async (filter?: RunFilter) => {
    checkRunFilter(filter)
    return filterRuns(await readRunRecords(await runFolders()), filter)
  }

  const prune = async (kept: RunRetention) => {
    const removed = runsToPrune(await listRuns(), kept)
    for (const runId of removed) await removeRun(runId)
    return removed
  }

  // The store's own retention, applied as each run finishes, reads only the folders it has not
  // seen finished: reading every run's record made each finish cost 0.4 s at 3,000 runs. What it
  // remembers is what retention keeps, and a remembered run is read again before it is removed,
  // so a run that another process took up again or rewrote is never removed on stale knowledge.
  const finishedRuns = new Map<RunId, Pick<RunRecord, 'id' | 'status' | 'updatedAt'>>()
  const remember = (record: RunRecord) => {
    if (record.status === 'running') finishedRuns.delete(record.id)
    else finishedRuns.set(record.id, { id: record.id, status: record.status, updatedAt: record.updatedAt })
  }
  const retain = async () => {
    const folders = await runFolders()
    const present = new Set(folders)
    for (const runId of finishedRuns.keys()) if (!present.has(runId)) finishedRuns.delete(runId)
    for (const record of await readRunRecords(folders.filter((runId) => !finishedRuns.has(runId))))
      remember(record)
    // A run found changed since it was seen is learnt again, and the choice made anew with it.
    for (let round = 0; round < 3; round++) {
      let stale = false
      for (const runId of runsToPrune([...finishedRuns.values()], retention)) {
        const known = finishedRuns.get(runId)!
        const [current] = await readRunRecords([runId])
        if (current?.status !== 'running' && current?.updatedAt === known.updatedAt) {
          finishedRuns.delete(runId)
          await removeRun(runId)
        } else {
          stale = true
          if (current) remember(current)
          else finishedRuns.delete(runId)
        }
      }
      if (!stale) return
    }
  }
  // One pass at a time, each on what the one before left: two at once would race over the same runs.
  let retaining: Promise<void> = Promise.resolve()

  return {
    async saveRun(record: RunRecord) {
      assertRunId(record.id)
      await writeAtomic(path.join(runDir(record.id), 'run.json'), encodeRecord(record))
      if (!hasBounds(retention)) return
      remember(record)
      if (record.status !== 'running') {
        retaining = retaining.then(() => applyRetention(retain, `fileStore(${root})`))
        await retaining
      }
    },
    async saveAgent(runId: string, record: AgentRecord, storedMessages = 0) {
      assertAgentRecordOf(runId, record)
      const file = path.join(runDir(runId), 'agents', agentFileName(record.id))
      const { json, annotations, chunks } = encodeAgentRecordParts(record, storedMessages)
      if (chunks.length > 0) {
        const historyDir = historyDirOf(file)
        await Promise.all(
          chunks.map((chunk) => writeAtomic(path.join(historyDir, `${chunk.index}.json`), chunk.json)),
        )
      }
      await writeAtomic(file, joinRecordParts(json, annotations))
    },
    async loadRun(runId: string) {
      assertRunId(runId)
      const runFile = path.join(runDir(runId), 'run.json')
      const runText = await readRunText(runId, runFile)
      if (runText === undefined) return undefined
      const run = runRecordIn(runText, runFile, runId)
      const folder = path.join(runDir(runId), 'agents')
      const names = (await readdir(folder).catch(() => [] as string[])).filter((name) =>
        name.endsWith('.json'),
      )
      const agents = await Promise.all(
        names.sort().map(async (name) => {
          const file = path.join(folder, name)
          return readAgent(file, (await readIfExists(file)) ?? '', runId)
        }),
      )
      return { run, agents }
    },
    async loadAgent(runId: string, agentId: string) {
      assertRunId(runId)
      // An agent id comes from outside too (the server's URLs): it must name a file of this run.
      if (!isValidAgentId(agentId)) {
        throw new InvalidInputError(
          `invalid agent id ${JSON.stringify(String(agentId).slice(0, 80))}: expected ids of letters, digits, "_" or "-" joined by dots`,
        )
      }
      const file = path.join(runDir(runId), 'agents', agentFileName(agentId))
      const text = await readIfExists(file)
      return text === undefined ? undefined : readAgent(file, text, runId)
    },
    async loadRunRecord(runId: string) {
      assertRunId(runId)
      const file = path.join(runDir(runId), 'run.json')
      const text = await readRunText(runId, file)
      return text === undefined ? undefined : runRecordIn(text, file, runId)
    },
    listRuns,
    ...fileClaims(runDir, writeAtomic),
    async deleteRun(runId: string) {
      assertRunId(runId)
      await removeRun(runId)
    },
    async prune(kept) {
      return prune(kept === undefined ? retention : checkRetention(kept))
    },
  }
}

/** Run records `listRuns` reads at once. */
const listReaders = 32

/**
 * A run record read from the folder of run `runId`. A folder copied or renamed by hand holds
 * another run's record: it is refused, not taken for that run.
 */
function runRecordIn(text: string, file: string, runId: string): RunRecord {
  const record = decodeRunRecord(text, file)
  if (record.id !== runId)
    throw new SnapshotError(
      file,
      `"${record.id}"; expected "${runId}", the run its folder is named for`,
      'id',
    )
  return record
}

/** An agent's record from its file's text, with the chunks of its history it needs; it must be the file's own. */
async function readAgent(file: string, text: string, runId: string): Promise<AgentRecord> {
  const historyDir = historyDirOf(file)
  const needed = chunksNeeded(text)
  // No more than the folder holds: a record that claims a billion messages is refused, not read.
  const held = needed === 0 ? 0 : (await readdir(historyDir).catch(() => [])).length
  const read = await Promise.all(
    Array.from({ length: Math.min(needed, held) }, (_, index) =>
      readIfExists(path.join(historyDir, `${index}.json`)),
    ),
  )
  // The chunks up to the first missing one: the decoder names what is missing.
  const missing = read.indexOf(undefined)
  const record = decodeAgentRecord(text, file, (missing === -1 ? read : read.slice(0, missing)) as string[])
  if (record.runId !== runId)
    throw new SnapshotError(
      file,
      `"${record.runId}"; expected "${runId}", the run its folder is named for`,
      'runId',
    )
  if (agentFileName(record.id) !== path.basename(file))
    throw new SnapshotError(file, `"${record.id}"; expected the agent its file is named for`, 'id')
  return record
}

/** The folder of an agent's history chunks, beside its record file. */
function historyDirOf(agentFile: string): string {
  return agentFile.replace(/\.json$/, '.history')
}

/** Agent ids are safe file names; very deep ids are hashed to stay under file-name limits. */
function agentFileName(agentId: string): string {
  if (agentId.length <= 160) return `${agentId}.json`
  return `${createHash('sha256').update(agentId).digest('hex').slice(0, 40)}.json`
}
