import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { afterEach, beforeEach, expect, test, vi } from 'vitest'
import { makeRunRecord } from '../../../../tests/support/run-store-conformance.js'
import { fileStore } from './file-store.js'

// Every file the store reads, counted: a run's finish must not read the records of every run.
vi.mock('node:fs/promises', async (importActual) => {
  const actual = await importActual<typeof import('node:fs/promises')>()
  return { ...actual, readFile: vi.fn(actual.readFile) }
})

let dir: string
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'cohort-retention-'))
})
afterEach(async () => {
  await rm(dir, { recursive: true, force: true })
})

const finished = (id: string, at: number) =>
  makeRunRecord(id, { status: 'completed', createdAt: at, updatedAt: at })

/** The run records read since the last call. */
function runRecordsRead(): string[] {
  const read = vi.mocked(readFile).mock.calls.map(([file]) => String(file))
  vi.mocked(readFile).mockClear()
  return read.filter((file) => file.endsWith('run.json')).map((file) => path.basename(path.dirname(file)))
}

test("fileStore's retention reads, as a run finishes, only the runs it has not seen finished and the one it removes", async () => {
  const store = fileStore(dir, { retention: { maxFinishedRuns: 200 } })
  for (let i = 0; i < 200; i++) await store.saveRun(finished(`old${i}`, 1_000 + i))
  await store.saveRun(makeRunRecord('live'))
  runRecordsRead()

  await store.saveRun(finished('new', 5_000))
  // The running run may have finished elsewhere; old0 is read again before it is removed.
  expect(runRecordsRead().sort()).toEqual(['live', 'old0'])
  expect(await store.loadRunRecord('old0')).toBeUndefined()
  expect((await store.listRuns({ status: 'completed' })).length).toBe(200)
})

test("fileStore's retention learns the runs another process wrote, and removes none it took up again", async () => {
  const store = fileStore(dir, { retention: { maxFinishedRuns: 2 } })
  const other = fileStore(dir)
  await store.saveRun(finished('a', 1_000))
  await store.saveRun(finished('b', 2_000))
  // Another process finishes c (so a is past the retention), and resumes a: it runs again.
  await other.saveRun(finished('c', 3_000))
  await other.saveRun(makeRunRecord('a', { createdAt: 1_000, updatedAt: 4_000 }))
  await store.saveRun(finished('d', 5_000))
  expect((await store.listRuns()).map((run) => run.id).sort()).toEqual(['a', 'c', 'd'])
  // A record rewritten by hand since it was seen is read again, not removed on what was remembered.
  const file = path.join(dir, 'c', 'run.json')
  await writeFile(file, JSON.stringify({ ...JSON.parse(await readFile(file, 'utf8')), updatedAt: 9_000 }))
  await store.saveRun(finished('e', 6_000))
  expect((await store.listRuns()).map((run) => run.id).sort()).toEqual(['a', 'c', 'e'])
  await store.saveRun(finished('f', 7_000))
  expect((await store.listRuns()).map((run) => run.id).sort()).toEqual(['a', 'c', 'f'])
})
