import type { AgentRecord, RunFilter, RunRecord, RunRetention, RunStatus, RunStore } from '@cohort/core'
import { InvalidInputError } from '@cohort/core'
import { afterEach, beforeEach, describe, expect, test } from 'vitest'

/** A valid run record; `overrides` change any field. */
export function makeRunRecord(id: string, overrides: Partial<RunRecord> = {}): RunRecord {
  return {
    version: 1,
    id,
    agent: 'lead',
    task: 'do the thing',
    rootAgentId: 'lead',
    status: 'running',
    createdAt: 1_700_000_000_000,
    updatedAt: 1_700_000_000_000,
    ...overrides,
  }
}

/** A valid agent record holding a suspended agent's snapshot. */
export function makeAgentRecord(
  runId: string,
  id: string,
  overrides: Partial<AgentRecord> = {},
): AgentRecord {
  return {
    version: 1,
    runId,
    id,
    name: 'worker',
    parentId: id === 'lead' ? null : 'lead',
    depth: id === 'lead' ? 0 : 1,
    status: 'suspended',
    updatedAt: 1_700_000_000_000,
    snapshot: {
      status: 'active',
      value: 'suspended',
      historyValue: {},
      children: {},
      context: {
        runId,
        agentId: id,
        name: 'worker',
        parentId: id === 'lead' ? null : 'lead',
        depth: id === 'lead' ? 0 : 1,
        task: 'a task',
        messages: [
          { role: 'system', content: 'be useful' },
          { role: 'user', content: 'a task' },
          {
            role: 'assistant',
            content: '',
            toolCalls: [{ id: 'c1', name: 'sleep', arguments: '{"seconds":1}' }],
          },
          { role: 'tool', toolCallId: 'c1', content: '{"slept":1}' },
        ],
        pending: [],
        children: [{ localId: 'a', id: `${id}.a`, agent: 'worker', task: 'sub' }],
        delivered: [],
        waitingOn: ['a'],
        waitCallId: null,
        dependsOn: [],
        runsAfter: [],
        priority: 0,
        timeoutMs: null,
        deadline: null,
        fallback: null,
        inbox: [],
        receivedMessages: [],
        awaiting: null,
        answers: {},
        busyMs: 12,
        retries: 0,
        processes: [],
        conflicts: [],
        turn: 2,
        repairs: 0,
        usage: { promptTokens: 10, completionTokens: 5, cost: 0 },
        startedAt: 1_700_000_000_000,
        endedAt: null,
      },
    },
    ...overrides,
  }
}

export interface StoreHarness {
  store: RunStore
  /** Removes whatever the store created. */
  cleanup?(): Promise<void>
}

/** What a factory is given: the options every store takes. */
export interface StoreOptions {
  retention?: RunRetention
}

/**
 * The behaviour every `RunStore` must have. Call inside a test file with a factory for a fresh
 * store, which passes `options` on to the store.
 */
/** `makeAgentRecord` with a history of `count` messages: past `historyChunkSize`, stores keep its start apart. */
export function makeLongAgentRecord(runId: string, id: string, count: number): AgentRecord {
  const record = makeAgentRecord(runId, id)
  const messages = [...record.snapshot.context.messages]
  for (let i = messages.length; i < count; i++) messages.push({ role: 'user', content: `message ${i}` })
  record.snapshot.context.messages = messages.slice(0, count)
  return record
}

export function describeRunStore(
  name: string,
  create: (options?: StoreOptions) => Promise<StoreHarness>,
): void {
  describe(`RunStore conformance: ${name}`, () => {
    let harnesses: StoreHarness[] = []
    let store: RunStore
    const open = async (options?: StoreOptions) => {
      const harness = await create(options)
      harnesses.push(harness)
      return harness.store
    }
    beforeEach(async () => {
      store = await open()
    })
    afterEach(async () => {
      for (const harness of harnesses) {
        await harness.store.close?.()
        await harness.cleanup?.()
      }
      harnesses = []
    })

    test('an unknown run loads as undefined', async () => {
      expect(await store.loadRun('nothing-here')).toBeUndefined()
    })

    test('a run and its agents round-trip, with rich values intact', async () => {
      const result = {
        when: new Date(1_700_000_000_123),
        tags: new Set(['a', 'b']),
        big: 12345678901234567890n,
      }
      // The time it spent detached too: wall time in metrics is read from the record.
      const run = makeRunRecord('r1', { status: 'completed', result, stoppedMs: 3_000, detachedAt: 5 })
      await store.saveRun(run)
      await store.saveAgent('r1', makeAgentRecord('r1', 'lead'))
      await store.saveAgent('r1', makeAgentRecord('r1', 'lead.a', { status: 'completed' }))
      const loaded = await store.loadRun('r1')
      expect(loaded?.run).toEqual(run)
      const agents = [...(loaded?.agents ?? [])].sort((a, b) => a.id.localeCompare(b.id))
      expect(agents).toEqual([
        makeAgentRecord('r1', 'lead'),
        makeAgentRecord('r1', 'lead.a', { status: 'completed' }),
      ])
    })

    test('saving an agent again replaces only that agent', async () => {
      await store.saveRun(makeRunRecord('r2'))
      await store.saveAgent('r2', makeAgentRecord('r2', 'lead'))
      await store.saveAgent('r2', makeAgentRecord('r2', 'lead.a'))
      await store.saveAgent('r2', makeAgentRecord('r2', 'lead.a', { status: 'completed', updatedAt: 2 }))
      const loaded = await store.loadRun('r2')
      expect(loaded?.agents).toHaveLength(2)
      expect(loaded?.agents.find((a) => a.id === 'lead.a')).toMatchObject({
        status: 'completed',
        updatedAt: 2,
      })
      expect(loaded?.agents.find((a) => a.id === 'lead')).toMatchObject({ status: 'suspended' })
    })

    test('a batch of agents (saveAgents, where the store has it) lands whole, rich values intact, replacing earlier rows', async () => {
      if (!store.saveAgents) return
      await store.saveRun(makeRunRecord('rb'))
      await store.saveAgent('rb', makeAgentRecord('rb', 'lead'))
      const batch = Array.from({ length: 40 }, (_, i) =>
        makeAgentRecord('rb', `lead.w${i}`, { status: i % 2 === 0 ? 'completed' : 'running' }),
      )
      const lead = makeAgentRecord('rb', 'lead', { status: 'completed', updatedAt: 5 })
      lead.snapshot.context.result = { at: new Date(7), big: 10n }
      await store.saveAgents('rb', [...batch, lead])
      const loaded = await store.loadRun('rb')
      expect(loaded?.agents).toHaveLength(41)
      expect(loaded?.agents.find((a) => a.id === 'lead')).toMatchObject({ status: 'completed', updatedAt: 5 })
      expect(loaded?.agents.find((a) => a.id === 'lead')?.snapshot.context.result).toEqual({
        at: new Date(7),
        big: 10n,
      })
      expect(loaded?.agents.find((a) => a.id === 'lead.w3')).toMatchObject({ status: 'running' })
    })

    test('a long history is kept whole: a save told how many messages are stored adds only the rest, and the agent loads whole', async () => {
      await store.saveRun(makeRunRecord('rh'))
      const agent = makeAgentRecord('rh', 'lead.h')
      // Past two chunks of history (see `encodeAgentRecordParts`), with text that needs escaping.
      const grown = [
        ...agent.snapshot.context.messages,
        ...Array.from({ length: 40 }, (_, i) => ({
          role: i % 2 === 0 ? ('assistant' as const) : ('user' as const),
          content: `turn ${i}, "quoted"\nover two lines`,
        })),
      ]
      const withMessages = (messages: typeof grown, updatedAt = 1): AgentRecord => ({
        ...agent,
        updatedAt,
        snapshot: { ...agent.snapshot, context: { ...agent.snapshot.context, messages } },
      })
      const loaded = async () => {
        const fromRun = (await store.loadRun('rh'))?.agents.find((a) => a.id === 'lead.h')
        if (store.loadAgent) expect(await store.loadAgent('rh', 'lead.h')).toEqual(fromRun)
        return fromRun
      }
      // Step by step, as a run writes it, a chunk's end crossed on the way; then in bigger steps.
      for (const [count, stored] of [
        [2, 0],
        [15, 2],
        [16, 15],
        [17, 16],
        [33, 17],
      ] as const) {
        await store.saveAgent('rh', withMessages(grown.slice(0, count), count), stored)
        expect(await loaded()).toEqual(withMessages(grown.slice(0, count), count))
      }
      const other = makeAgentRecord('rh', 'lead.o')
      if (store.saveAgents) await store.saveAgents('rh', [withMessages(grown, 44), other], [33, 0])
      else {
        await store.saveAgent('rh', withMessages(grown, 44), 33)
        await store.saveAgent('rh', other)
      }
      expect(await loaded()).toEqual(withMessages(grown, 44))
      expect((await store.loadRun('rh'))?.agents.find((a) => a.id === 'lead.o')).toEqual(other)
      // Written whole (nothing stored), a shorter history replaces the longer one; later saves add to it.
      const rewritten = [
        grown[0]!,
        { role: 'user' as const, content: 'another task' },
        ...grown.slice(10, 30),
      ]
      await store.saveAgent('rh', withMessages(rewritten, 45), 0)
      expect(await loaded()).toEqual(withMessages(rewritten, 45))
      await store.saveAgent('rh', withMessages([...rewritten, ...grown.slice(30, 42)], 46), 22)
      expect(await loaded()).toEqual(withMessages([...rewritten, ...grown.slice(30, 42)], 46))
    })

    test('saving the run record again updates it', async () => {
      await store.saveRun(makeRunRecord('r3'))
      await store.saveRun(
        makeRunRecord('r3', { status: 'failed', error: { name: 'E', code: 'X', message: 'boom' } }),
      )
      expect((await store.loadRun('r3'))?.run).toMatchObject({ status: 'failed', error: { message: 'boom' } })
    })

    test('a loaded run is a copy: changing it does not change the store', async () => {
      await store.saveRun(makeRunRecord('r4'))
      await store.saveAgent('r4', makeAgentRecord('r4', 'lead'))
      const first = await store.loadRun('r4')
      first!.run.status = 'completed'
      first!.agents[0]!.snapshot.context.messages.push({ role: 'user', content: 'tampered' })
      const second = await store.loadRun('r4')
      expect(second?.run.status).toBe('running')
      expect(second?.agents[0]?.snapshot.context.messages).toHaveLength(4)
    })

    test('listRuns: newest first, filtered by status and time, paged', async () => {
      const statuses: RunStatus[] = ['running', 'completed', 'failed', 'completed', 'cancelled']
      for (const [i, status] of statuses.entries()) {
        await store.saveRun(makeRunRecord(`list-${i}`, { status, createdAt: 1000 + i, updatedAt: 1000 + i }))
      }
      expect((await store.listRuns()).map((r) => r.id)).toEqual([
        'list-4',
        'list-3',
        'list-2',
        'list-1',
        'list-0',
      ])
      expect((await store.listRuns({ status: 'completed' })).map((r) => r.id)).toEqual(['list-3', 'list-1'])
      expect((await store.listRuns({ status: ['failed', 'cancelled'] })).map((r) => r.id)).toEqual([
        'list-4',
        'list-2',
      ])
      expect((await store.listRuns({ since: 1002, until: 1004 })).map((r) => r.id)).toEqual([
        'list-3',
        'list-2',
      ])
      expect((await store.listRuns({ limit: 2, offset: 1 })).map((r) => r.id)).toEqual(['list-3', 'list-2'])
    })

    test('a run filter a store cannot answer (an unknown status, a negative offset) is refused, naming it', async () => {
      const bad: [RunFilter, RegExp][] = [
        [
          { status: 'done' as RunStatus },
          /invalid run filter: status: .*expected status \(running, completed, failed, cancelled\)/,
        ],
        [{ offset: -1 }, /invalid run filter: offset: /],
        [{ limit: 1.5 }, /invalid run filter: limit: /],
      ]
      for (const [filter, message] of bad) {
        const refused = store.listRuns(filter)
        await expect(refused).rejects.toBeInstanceOf(InvalidInputError)
        await expect(refused).rejects.toThrow(message)
      }
    })

    test('run ids that are not plain ids are refused, and nothing is written', async () => {
      for (const bad of ['../x', 'a/b', '', 'a\\b', '..', 'x'.repeat(65)]) {
        await expect(store.loadRun(bad)).rejects.toBeInstanceOf(InvalidInputError)
        await expect(store.saveRun(makeRunRecord(bad))).rejects.toBeInstanceOf(InvalidInputError)
        await expect(store.saveAgent(bad, makeAgentRecord(bad, 'lead'))).rejects.toBeInstanceOf(
          InvalidInputError,
        )
      }
      expect(await store.listRuns()).toEqual([])
    })

    test("an agent record whose id is no agent id, or that is another run's, is refused, naming it, and nothing is written", async () => {
      await store.saveRun(makeRunRecord('r6'))
      const refused: [AgentRecord, RegExp][] = [
        [makeAgentRecord('r6', '../../../escaped'), /invalid agent id "..\/..\/..\/escaped"/],
        [makeAgentRecord('r6', 'a/b'), /invalid agent id "a\/b"/],
        [makeAgentRecord('r6', ''), /invalid agent id ""/],
        [makeAgentRecord('r6', 'lead. x'), /invalid agent id "lead. x"/],
        [makeAgentRecord('other', 'lead'), /agent "lead" of run "other" cannot be saved in run "r6"/],
      ]
      for (const [record, message] of refused) {
        const write = store.saveAgent('r6', record)
        await expect(write).rejects.toBeInstanceOf(InvalidInputError)
        await expect(write).rejects.toThrow(message)
        if (store.saveAgents) await expect(store.saveAgents('r6', [record])).rejects.toThrow(message)
      }
      // The run still loads: no record it cannot read was stored in it.
      expect((await store.loadRun('r6'))?.agents).toEqual([])
    })

    test('deleteRun removes the run and its agents', async () => {
      if (!store.deleteRun) return
      await store.saveRun(makeRunRecord('r5'))
      await store.saveAgent('r5', makeAgentRecord('r5', 'lead'))
      await store.deleteRun('r5')
      expect(await store.loadRun('r5')).toBeUndefined()
    })

    test('claims: one owner at a time; renewed by its owner; free once released, lapsed, or its owner replaced', async () => {
      const claim = store.claimRun!.bind(store)
      const release = store.releaseRun!.bind(store)
      const later = Date.now() + 60_000
      expect(await claim('c1', { owner: 'a', until: later })).toEqual({ owner: 'a', until: later })
      // Held by a: b is told who holds it, and until when.
      expect(await claim('c1', { owner: 'b', until: later + 5 })).toEqual({ owner: 'a', until: later })
      expect(await claim('c1', { owner: 'a', until: later + 10 })).toEqual({ owner: 'a', until: later + 10 })
      // Released by someone else: nothing changes.
      await release('c1', 'b')
      expect((await claim('c1', { owner: 'b', until: later })).owner).toBe('a')
      // Replacing a holder found dead; replacing one that is not the holder takes nothing.
      expect((await claim('c1', { owner: 'c', until: later, replacing: 'x' })).owner).toBe('a')
      expect(await claim('c1', { owner: 'c', until: later, replacing: 'a' })).toEqual({
        owner: 'c',
        until: later,
      })
      await release('c1', 'c')
      expect((await claim('c1', { owner: 'b', until: later })).owner).toBe('b')
      // A renewal keeps only what its owner holds: one let go of, or taken, is not got back.
      expect(await claim('c1', { owner: 'b', until: later + 20, renewing: true })).toEqual({
        owner: 'b',
        until: later + 20,
      })
      expect((await claim('c1', { owner: 'a', until: later, renewing: true })).owner).toBe('b')
      await release('c1', 'b')
      expect(await claim('c1', { owner: 'b', until: later, renewing: true })).toEqual({ owner: '', until: 0 })
      expect((await claim('c1', { owner: 'a', until: later })).owner).toBe('a')
      // A claim that lapsed is free.
      expect((await claim('c2', { owner: 'a', until: Date.now() + 30 })).owner).toBe('a')
      await new Promise((resolve) => setTimeout(resolve, 60))
      // Its owner, stalled past it, gets it back with a renewal while nobody took it meanwhile.
      expect(await claim('c2', { owner: 'a', until: later, renewing: true })).toEqual({
        owner: 'a',
        until: later,
      })
      expect((await claim('c2', { owner: 'b', until: later })).owner).toBe('a')
      await claim('c2', { owner: 'a', until: Date.now() + 30, renewing: true })
      await new Promise((resolve) => setTimeout(resolve, 60))
      expect((await claim('c2', { owner: 'b', until: later })).owner).toBe('b')
      // Of many claiming a free run at once, one gets it and every other is told it is that one's.
      const owners = await Promise.all(
        Array.from({ length: 8 }, (_, index) => claim('c3', { owner: `p${index}`, until: later })),
      )
      expect(new Set(owners.map((holder) => holder.owner)).size).toBe(1)
      // So of many taking over one dead holder's claim at once: the read and the write are one step.
      await claim('c4', { owner: 'dead', until: later })
      const heirs = await Promise.all(
        Array.from({ length: 8 }, (_, index) =>
          claim('c4', { owner: `h${index}`, until: later, replacing: 'dead' }),
        ),
      )
      expect(new Set(heirs.map((holder) => holder.owner)).size).toBe(1)
      // A claim is no run: listing shows none, and deleting the run takes its claim.
      expect(await store.listRuns()).toEqual([])
      if (store.deleteRun) {
        await store.deleteRun('c3')
        expect((await claim('c3', { owner: 'z', until: later })).owner).toBe('z')
      }
    })

    const day = 86_400_000
    /** A run and its root agent, created and last updated `daysAgo` days ago. */
    const saveAged = async (target: RunStore, id: string, status: RunStatus, daysAgo: number) => {
      const at = Date.now() - daysAgo * day
      await target.saveAgent(id, makeAgentRecord(id, 'lead', { status: 'completed', updatedAt: at }))
      await target.saveRun(makeRunRecord(id, { status, createdAt: at, updatedAt: at }))
    }

    test('prune removes the finished runs a retention does not keep, with their agents, oldest first, never a running one', async () => {
      expect(store.prune).toBeTypeOf('function')
      await saveAged(store, 'p-run', 'running', 20)
      await saveAged(store, 'p10', 'completed', 10)
      await saveAged(store, 'p8', 'failed', 8)
      await saveAged(store, 'p6', 'cancelled', 6)
      await saveAged(store, 'p4', 'completed', 4)
      await saveAged(store, 'p2', 'completed', 2)

      expect(await store.prune!({ maxFinishedRuns: 3 })).toEqual(['p10', 'p8'])
      expect(await store.loadRun('p10')).toBeUndefined()
      expect(await store.loadRun('p8')).toBeUndefined()
      if (store.loadAgent) expect(await store.loadAgent('p10', 'lead')).toBeUndefined()
      expect(await store.prune!({ maxAgeMs: 5 * day })).toEqual(['p6'])
      expect(await store.prune!({ maxAgeMs: 5 * day, maxFinishedRuns: 2 })).toEqual([])
      expect((await store.listRuns()).map((run) => run.id)).toEqual(['p2', 'p4', 'p-run'])
      expect(await store.prune!({ maxFinishedRuns: 0 })).toEqual(['p4', 'p2'])
      expect((await store.loadRun('p-run'))?.agents).toHaveLength(1)
      await expect(store.prune!({ maxFinishedRuns: -1 })).rejects.toBeInstanceOf(InvalidInputError)
      await expect(store.prune!({ maxAgeMs: Number.NaN })).rejects.toBeInstanceOf(InvalidInputError)
    })

    test('a store with a retention applies it each time it saves a finished run', async () => {
      const kept = await open({ retention: { maxFinishedRuns: 2, maxAgeMs: 7 * day } })
      await saveAged(kept, 'k-run', 'running', 30)
      await saveAged(kept, 'k10', 'completed', 10)
      expect(await kept.loadRun('k10')).toBeUndefined()
      await saveAged(kept, 'k3', 'completed', 3)
      await saveAged(kept, 'k2', 'failed', 2)
      await saveAged(kept, 'k1', 'completed', 1)
      expect((await kept.listRuns()).map((run) => run.id)).toEqual(['k1', 'k2', 'k-run'])
      expect(await kept.prune!()).toEqual([])
      expect(await kept.prune!({ maxFinishedRuns: 1 })).toEqual(['k2'])
      // A run saved again, finished with the same id after it was removed, is stored as new.
      await saveAged(kept, 'k2', 'completed', 0)
      expect((await kept.listRuns()).map((run) => run.id)).toEqual(['k2', 'k1', 'k-run'])
      await expect(create({ retention: { maxFinishedRuns: 1.5 } })).rejects.toThrow(
        /retention.maxFinishedRuns must be a whole number, 0 or more/,
      )
    })

    test('concurrent writes to different agents of one run all land', async () => {
      await store.saveRun(makeRunRecord('r6'))
      await Promise.all(
        Array.from({ length: 50 }, (_, i) => store.saveAgent('r6', makeAgentRecord('r6', `lead.w${i}`))),
      )
      expect((await store.loadRun('r6'))?.agents).toHaveLength(50)
    })
  })
}

/**
 * For stores shared by processes (PostgreSQL, Redis): a record stored as completed or failed is
 * final. A later write of that agent, as a worker that lost its job would make (running, with a
 * history of its own), changes neither the record nor its history; other agents are written.
 */
export async function expectSettledRecordsFinal(store: RunStore, runId: string): Promise<void> {
  await store.saveRun(makeRunRecord(runId))
  const done = makeLongAgentRecord(runId, 'lead', 20)
  done.status = 'completed'
  await store.saveAgent(runId, done)
  const stale = makeLongAgentRecord(runId, 'lead', 40)
  stale.snapshot.context.messages = stale.snapshot.context.messages.map((message) => ({
    ...message,
    content: 'stale',
  }))
  await store.saveAgent(runId, stale)
  await store.saveAgents!(runId, [stale, makeAgentRecord(runId, 'lead.other', { status: 'running' })])
  expect(await store.loadAgent!(runId, 'lead')).toEqual(done)
  expect((await store.loadAgent!(runId, 'lead.other'))?.status).toBe('running')
}
