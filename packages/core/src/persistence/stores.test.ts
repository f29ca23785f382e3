import { mkdir, mkdtemp, readdir, readFile, rm, utimes, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { expect, test } from 'vitest'
import {
  describeRunStore,
  makeLongAgentRecord,
  makeRunRecord,
} from '../../../../tests/support/run-store-conformance.js'
import { fileStore } from './file-store.js'
import { memoryStore } from './memory-store.js'

describeRunStore('memoryStore', async (options) => ({ store: memoryStore(options) }))

describeRunStore('fileStore', async (options) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'cohort-store-'))
  const cleanup = () => rm(dir, { recursive: true, force: true })
  try {
    return { store: fileStore(dir, options), cleanup }
  } catch (error) {
    await cleanup()
    throw error
  }
})

test('fileStore writes a chunk of a long history once, beside the record, and reads the ones its record needs', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'cohort-history-'))
  try {
    const store = fileStore(dir)
    await store.saveRun(makeRunRecord('h1'))
    const at = (count: number) => makeLongAgentRecord('h1', 'lead', count)
    const historyDir = path.join(dir, 'h1', 'agents', 'lead.history')
    await store.saveAgent('h1', at(15), 0)
    await expect(readdir(historyDir)).rejects.toThrow(/ENOENT/)
    await store.saveAgent('h1', at(20), 15)
    expect(await readdir(historyDir)).toEqual(['0.json'])
    // Changed on disk: a write that adds to the history leaves it as it is.
    const changed = [{ role: 'system', content: 'changed' }, ...at(16).snapshot.context.messages.slice(1)]
    await writeFile(path.join(historyDir, '0.json'), JSON.stringify(changed))
    await store.saveAgent('h1', at(33), 20)
    expect((await readdir(historyDir)).sort()).toEqual(['0.json', '1.json'])
    expect((await store.loadAgent!('h1', 'lead'))?.snapshot.context.messages).toEqual([
      ...changed,
      ...at(33).snapshot.context.messages.slice(16),
    ])
    // A chunk a crash left after its record (written, the record not) is not read…
    await writeFile(path.join(historyDir, '2.json'), '[{"role":')
    expect((await store.loadRun('h1'))?.agents[0]?.snapshot.context.messages).toHaveLength(33)
    // …and a write of the whole history (the next process's first) writes every chunk again.
    await store.saveAgent('h1', at(50), 0)
    expect(await store.loadAgent!('h1', 'lead')).toEqual(at(50))
    // A chunk the record needs that is gone is an error naming the record, not a shorter history.
    await rm(path.join(historyDir, '1.json'))
    await expect(store.loadAgent!('h1', 'lead')).rejects.toThrow(
      /lead\.json: field "historyLength": the record has 50 messages, 2 of them its own, and its history holds 16 more/,
    )
    // A record that claims a history of a billion messages is refused at once, not read chunk by chunk.
    const file = path.join(dir, 'h1', 'agents', 'lead.json')
    await writeFile(
      file,
      (await readFile(file, 'utf8')).replace('"historyLength":50', '"historyLength":1000000000'),
    )
    await expect(store.loadRun('h1')).rejects.toThrow(
      /field "historyLength": the record has 1000000000 messages/,
    )
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
})

test("fileStore refuses an agent id that is a path, rather than read another run's file", async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'cohort-agent-id-'))
  try {
    const store = fileStore(dir)
    await store.saveRun(makeRunRecord('mine'))
    await store.saveRun(makeRunRecord('other'))
    await store.saveAgent('other', makeLongAgentRecord('other', 'lead', 2))
    await expect(store.loadAgent!('mine', '../../other/agents/lead')).rejects.toThrow(
      /invalid agent id "..\/..\/other\/agents\/lead": expected ids of letters, digits, "_" or "-" joined by dots/,
    )
    expect(await store.loadAgent!('mine', 'lead')).toBeUndefined()
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
})

test('fileStore never writes outside its folder, whatever id an agent record carries', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'cohort-agent-escape-'))
  try {
    const store = fileStore(path.join(dir, 'store'))
    await store.saveRun(makeRunRecord('mine'))
    for (const id of ['../../../escaped', '../../other/agents/lead', 'a/b', '..'])
      await expect(store.saveAgent('mine', makeLongAgentRecord('mine', id, 2))).rejects.toThrow(
        /invalid agent id/,
      )
    expect(await readdir(dir)).toEqual(['store'])
    expect(await readdir(path.join(dir, 'store'))).toEqual(['mine'])
    expect(await readdir(path.join(dir, 'store', 'mine'))).toEqual(['run.json'])
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
})

test('fileStore writes a run again after another process removed its folder (cohort prune, rm -rf)', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'cohort-removed-'))
  try {
    const store = fileStore(dir)
    await store.saveRun(makeRunRecord('nightly'))
    await store.saveAgent('nightly', makeLongAgentRecord('nightly', 'lead', 2))
    await rm(path.join(dir, 'nightly'), { recursive: true })
    await store.saveRun(makeRunRecord('nightly'))
    await store.saveAgent('nightly', makeLongAgentRecord('nightly', 'lead', 2))
    expect((await store.loadRun('nightly'))?.agents.map((agent) => agent.id)).toEqual(['lead'])
    // Its history chunks' folder too.
    await rm(path.join(dir, 'nightly'), { recursive: true })
    await store.saveAgent('nightly', makeLongAgentRecord('nightly', 'lead', 20), 0)
    expect(await store.loadAgent!('nightly', 'lead')).toEqual(makeLongAgentRecord('nightly', 'lead', 20))
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
})

test('memoryStore keeps finished runs of one millisecond in order without sorting them all again at each save', async () => {
  const store = memoryStore({ retention: { maxFinishedRuns: Number.POSITIVE_INFINITY } })
  const count = 20_000
  const started = performance.now()
  // Ids falling, so that each run finished goes before the ones of its millisecond (by id).
  for (let i = count; i > 0; i--) {
    const id = `run-${String(i).padStart(6, '0')}`
    await store.saveRun(makeRunRecord(id, { status: 'completed', createdAt: 1_000, updatedAt: 1_000 }))
  }
  // Sorting them all at each save took minutes here; in place, well under a second.
  expect(performance.now() - started).toBeLessThan(15_000)
  expect(await store.prune!({ maxFinishedRuns: count - 2 })).toEqual(['run-000001', 'run-000002'])
})

test("fileStore: of many claimers that find a dead claimer's lock at once, one removes it and one gets the run", async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'cohort-stale-lock-'))
  try {
    const store = fileStore(dir)
    const later = Date.now() + 60_000
    for (let trial = 0; trial < 20; trial++) {
      const runId = `stale${trial}`
      // The lock of a claimer killed while it held it, eleven seconds ago.
      await mkdir(path.join(dir, runId), { recursive: true })
      const lock = path.join(dir, runId, 'claim.json.lock')
      await writeFile(lock, 'dead')
      const then = new Date(Date.now() - 11_000)
      await utimes(lock, then, then)
      const holders = await Promise.all(
        Array.from({ length: 8 }, (_, index) => store.claimRun!(runId, { owner: `p${index}`, until: later })),
      )
      expect(new Set(holders.map((holder) => holder.owner)).size).toBe(1)
    }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
})

test('fileStore: renewing the claim of a run its retention removed answers no claim and leaves no empty folder behind', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'cohort-renew-'))
  try {
    const store = fileStore(dir, { retention: { maxFinishedRuns: 0 } })
    const until = Date.now() + 60_000
    await store.claimRun('gone', { owner: 'a', until })
    // Finished and kept by none: removed, its claim with it, before its owner let go.
    await store.saveRun({ ...makeRunRecord('gone'), status: 'completed' })
    expect(await readdir(dir)).toEqual([])
    expect(await store.claimRun('gone', { owner: 'a', until, renewing: true })).toEqual({
      owner: '',
      until: 0,
    })
    // A renewal every 10 s of each run a server holds made one folder each, kept for ever.
    expect(await readdir(dir)).toEqual([])
    await store.releaseRun('gone', 'a')
    expect(await readdir(dir)).toEqual([])
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
})

test('fileStore: a run removed while its owner lets go of its claim is removed whole, and neither call fails', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'cohort-remove-release-'))
  try {
    const store = fileStore(dir)
    const failures: string[] = []
    for (let trial = 0; trial < 40; trial++) {
      const runId = `run${trial}`
      await store.claimRun!(runId, { owner: 'a', until: Date.now() + 60_000 })
      await store.saveRun(makeRunRecord(runId))
      // Files enough that the removal takes a while; the release writes its lock into the folder
      // meanwhile (rm -r's last rmdir then failed with ENOTEMPTY, and the folder was left half removed).
      await mkdir(path.join(dir, runId, 'agents'))
      await Promise.all(
        Array.from({ length: 300 }, (_, index) =>
          writeFile(path.join(dir, runId, 'agents', `a${index}.json`), '{}'),
        ),
      )
      const settled = await Promise.allSettled([
        store.deleteRun(runId),
        new Promise((resolve) => setTimeout(resolve, trial % 4)).then(() => store.releaseRun!(runId, 'a')),
      ])
      for (const result of settled) if (result.status === 'rejected') failures.push(String(result.reason))
    }
    expect(failures).toEqual([])
    expect(await readdir(dir)).toEqual([])
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}, 60_000)
