import { mkdir, rm, rmdir, stat, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { StoreError } from '../errors.js'
import { assertRunId } from './codec.js'
import { readIfExists } from './read-file.js'
import { claimGranted, noClaim, type RunClaim, type RunStore } from './records.js'

/**
 * `fileStore`'s claims (`RunStore.claimRun`): `claim.json` in the run's folder, read and written
 * under a lock file, so that of two processes that find one claim free or lapsed, one takes it.
 */
export function fileClaims(
  runDir: (runId: string) => string,
  writeAtomic: (file: string, text: string) => Promise<void>,
): Required<Pick<RunStore, 'claimRun' | 'releaseRun'>> {
  const claimFile = (runId: string) => path.join(runDir(runId), 'claim.json')
  return {
    async claimRun(runId, request) {
      assertRunId(runId)
      const file = claimFile(runId)
      // A renewal keeps a claim, which is in the folder: a folder gone (the run pruned or deleted
      // while its owner held it) holds none, and is not made again, empty, by each renewal.
      if (!request.renewing) await mkdir(runDir(runId), { recursive: true })
      return underLock(file, async () => {
        const current = await readClaim(file)
        if (!claimGranted(current, request)) return current ?? noClaim
        const mine: RunClaim = { owner: request.owner, until: request.until }
        await writeAtomic(file, JSON.stringify(mine))
        return mine
      }).catch((error: unknown) => {
        if (request.renewing && isFolderGone(error)) return noClaim
        throw error
      })
    },
    async releaseRun(runId, owner) {
      assertRunId(runId)
      const file = claimFile(runId)
      const released = await underLock(file, async () => {
        if ((await readClaim(file))?.owner !== owner) return false
        await rm(file, { force: true })
        return true
      }).catch((error: unknown) => {
        // A run whose folder is gone (deleted, pruned) holds no claim.
        if (isFolderGone(error)) return false
        throw error
      })
      // A run never stored (a resume of an id that is not there) leaves no folder behind.
      if (released) await rmdir(runDir(runId)).catch(() => {})
    },
  }
}

/** `underLock`'s error when the run's folder is not there. */
function isFolderGone(error: unknown): boolean {
  return (error as { cause?: NodeJS.ErrnoException }).cause?.code === 'ENOENT'
}

/** A claimer that holds a claim's lock longer than this died while claiming: its lock is removed. */
const staleLockMs = 10_000

/**
 * `fn` while this process alone holds the lock of `file` (`<file>.lock`, made only where there is
 * none): reading a claim and replacing it is one step, so two processes that find one lapsed
 * claim do not both take it.
 */
async function underLock<T>(file: string, fn: () => Promise<T>): Promise<T> {
  const lock = `${file}.lock`
  // Written into the lock: only its holder removes it.
  const token = `${process.pid}.${Math.random()}`
  const started = Date.now()
  for (;;) {
    try {
      await writeFile(lock, token, { flag: 'wx' })
      break
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST')
        throw new StoreError(`could not lock ${file}: ${(error as Error).message}`, { cause: error })
      // Read before its time: a lock made again in between is fresh, never taken for the stale one.
      const held = await readIfExists(lock).catch(() => undefined)
      if (Date.now() - (await changedAt(lock)) > staleLockMs && (await removeStaleLock(lock, held, token)))
        continue
      // Waits past the time a lock goes stale: a claimer that died holding it does not fail the rest.
      if (Date.now() - started > 2 * staleLockMs)
        throw new StoreError(`could not lock ${file}: held for over ${2 * staleLockMs} ms`)
      else await new Promise((resolve) => setTimeout(resolve, 5 + Math.random() * 10))
    }
  }
  try {
    return await fn()
  } finally {
    if ((await readIfExists(lock).catch(() => undefined)) === token) await rm(lock, { force: true })
  }
}

/**
 * Removes a lock whose holder died holding it (`held`: what it held when found stale), one remover
 * at a time under a lock of its own: two that found it stale at once each removed it, the second
 * the lock the first had made since, and both went on to take the run.
 */
async function removeStaleLock(lock: string, held: string | undefined, token: string): Promise<boolean> {
  const removing = `${lock}.removing`
  try {
    await writeFile(removing, token, { flag: 'wx' })
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST')
      throw new StoreError(`could not lock ${lock}: ${(error as Error).message}`, { cause: error })
    // A remover that died removing: its own lock goes once stale too.
    if (Date.now() - (await changedAt(removing)) > staleLockMs) await rm(removing, { force: true })
    return false
  }
  try {
    // Each holder writes a token of its own: the same text is the same dead holder's lock.
    if (held === undefined || (await readIfExists(lock)) !== held) return false
    await rm(lock, { force: true })
    return true
  } finally {
    await rm(removing, { force: true })
  }
}

/** When `file` last changed, in epoch ms; now when it is gone. */
function changedAt(file: string): Promise<number> {
  return stat(file).then(
    (found) => found.mtimeMs,
    () => Date.now(),
  )
}

/** The claim on a run (`claim.json`); one that cannot be read is taken as lapsed. */
async function readClaim(file: string): Promise<RunClaim | undefined> {
  const text = await readIfExists(file)
  if (text === undefined) return undefined
  try {
    const claim = JSON.parse(text) as Partial<RunClaim>
    if (typeof claim.owner === 'string' && typeof claim.until === 'number')
      return { owner: claim.owner, until: claim.until }
  } catch {}
  return { owner: '', until: 0 }
}
