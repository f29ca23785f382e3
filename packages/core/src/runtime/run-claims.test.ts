import { spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { afterEach, expect, test, vi } from 'vitest'
import type { CohortError } from '../errors.js'
import { memoryStore } from '../persistence/memory-store.js'
import { claimMs, RunClaims } from './run-claims.js'

afterEach(() => {
  vi.useRealTimers()
})

test('a claim is renewed while held; one another process took is reported lost, and not renewed over', async () => {
  vi.useFakeTimers()
  const store = memoryStore()
  const lost: [string, CohortError][] = []
  const claims = new RunClaims(store, 30_000, (runId, error) => lost.push([runId, error]))
  await claims.claim('r1')
  const first = await store.claimRun!('r1', { owner: 'peek', until: 0 })
  expect(first.owner).toBe(claims.owner)

  // Renewed before it lapses: its end moves on.
  await vi.advanceTimersByTimeAsync(claimMs / 3 + 1)
  const renewed = await store.claimRun!('r1', { owner: 'peek', until: 0 })
  expect(renewed.until).toBeGreaterThan(first.until)

  // Taken by another (this process stalled past its claim): told once, and the other keeps it.
  await store.claimRun!('r1', { owner: 'other', until: Date.now() + claimMs, replacing: claims.owner })
  await vi.advanceTimersByTimeAsync(claimMs / 3 + 1)
  expect(lost.map(([runId, error]) => [runId, error.code])).toEqual([['r1', 'RUN_BUSY']])
  expect(lost[0]![1].message).toMatch(/^run r1 was taken over by "other" while this process held it/)
  await vi.advanceTimersByTimeAsync(claimMs / 3 + 1)
  expect(lost).toHaveLength(1)
  expect((await store.claimRun!('r1', { owner: 'peek', until: 0 })).owner).toBe('other')
  // Its release lets go of nothing it does not hold.
  await claims.release('r1')
  expect((await store.claimRun!('r1', { owner: 'peek', until: 0 })).owner).toBe('other')
})

test('a run released is free at once for another runtime; held twice in one runtime, it is kept until both let go', async () => {
  const store = memoryStore()
  const one = new RunClaims(store, 30_000, () => {})
  const two = new RunClaims(store, 30_000, () => {})
  await one.claim('r2')
  await one.claim('r2')
  await expect(two.claim('r2')).rejects.toMatchObject({ code: 'RUN_BUSY' })
  await one.release('r2')
  await expect(two.claim('r2')).rejects.toMatchObject({ code: 'RUN_BUSY' })
  await one.release('r2')
  await two.claim('r2')
})

test('a claim of this process id that no runtime of this process made (a restarted container) is taken over at once', async () => {
  const store = memoryStore()
  const claims = new RunClaims(store, 30_000, () => {})
  const former = claims.owner.replace(/:[^:]*$/, ':former')
  await store.claimRun!('r3', { owner: former, until: Date.now() + claimMs })
  await claims.claim('r3')
  expect((await store.claimRun!('r3', { owner: 'peek', until: 0 })).owner).toBe(claims.owner)
  // One of a runtime of this process that is alive is not.
  const other = new RunClaims(store, 30_000, () => {})
  await expect(other.claim('r3')).rejects.toMatchObject({ code: 'RUN_BUSY', until: expect.any(Number) })
})

test.skipIf(process.platform !== 'linux')(
  'a claim of a process killed but not yet waited for by its parent (a zombie) is taken over at once',
  async () => {
    // The shell starts `sleep` in the background and becomes another `sleep`, which never waits
    // for it: killed, the first stays a zombie, which `kill(pid, 0)` still reaches.
    const parent = spawn('sh', ['-c', 'sleep 60 & echo $!; exec sleep 60'], {
      stdio: ['ignore', 'pipe', 'ignore'],
    })
    try {
      const pid = Number(
        await new Promise<string>((resolve) => parent.stdout.once('data', (data) => resolve(String(data)))),
      )
      const state = () => readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.[0]
      process.kill(pid, 'SIGKILL')
      await vi.waitUntil(() => state() === 'Z', { timeout: 5_000 })
      expect(() => process.kill(pid, 0)).not.toThrow()

      const store = memoryStore()
      const claims = new RunClaims(store, 30_000, () => {})
      const dead = claims.owner.replace(/:\d+:[^:]*$/, `:${pid}:dead`)
      await store.claimRun!('r6', { owner: dead, until: Date.now() + claimMs })
      await claims.claim('r6')
      expect((await store.claimRun!('r6', { owner: 'peek', until: 0 })).owner).toBe(claims.owner)
      // Its parent, alive, still holds its own.
      const living = claims.owner.replace(/:\d+:[^:]*$/, `:${parent.pid}:alive`)
      await store.claimRun!('r7', { owner: living, until: Date.now() + claimMs })
      await expect(claims.claim('r7')).rejects.toMatchObject({ code: 'RUN_BUSY' })
    } finally {
      parent.kill('SIGKILL')
    }
  },
)

test('a run let go of while its renewal is under way is not kept by the renewal', async () => {
  vi.useFakeTimers()
  const inner = memoryStore()
  let slow = false
  const store = {
    ...inner,
    async claimRun(runId: string, request: Parameters<NonNullable<typeof inner.claimRun>>[1]) {
      if (slow) await new Promise((resolve) => setTimeout(resolve, 50))
      return inner.claimRun!(runId, request)
    },
  }
  const claims = new RunClaims(store, 30_000, () => {})
  await claims.claim('r4')
  slow = true
  // The renewal starts, and waits on the store while the run is let go of.
  await vi.advanceTimersByTimeAsync(claimMs / 3 + 1)
  await claims.release('r4')
  await vi.advanceTimersByTimeAsync(100)
  slow = false
  expect((await store.claimRun('r4', { owner: 'next', until: Date.now() + claimMs })).owner).toBe('next')
})

test('past its claim (its event loop stalled), a run writes only once a renewal says it still holds it', async () => {
  vi.useFakeTimers()
  const store = memoryStore()
  const claims = new RunClaims(store, 30_000, () => {})
  await claims.claim('r5')
  expect(claims.check('r5')).toBeUndefined()
  // Stalled past the claim, which nobody took: renewed, and the write goes on.
  vi.setSystemTime(Date.now() + claimMs + 1)
  await expect(claims.check('r5')).resolves.toBeUndefined()
  expect(claims.check('r5')).toBeUndefined()
  // Stalled again, and another process took the run meanwhile: refused, and it stays the other's.
  vi.setSystemTime(Date.now() + claimMs + 1)
  await store.claimRun!('r5', { owner: 'other', until: Date.now() + claimMs })
  await expect(claims.check('r5')).rejects.toMatchObject({
    code: 'RUN_BUSY',
    message: expect.stringMatching(/^run r5 was taken over by "other" while this process held it/),
  })
  expect((await store.claimRun!('r5', { owner: 'peek', until: 0 })).owner).toBe('other')
})
