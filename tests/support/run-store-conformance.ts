import type { AgentRecord, RunRecord, RunStatus, RunStore } from '@cohort/core'
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
        priority: 0,
        timeoutMs: null,
        deadline: null,
        fallback: null,
        inbox: [],
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

/** The behaviour every `RunStore` must have. Call inside a test file with a factory for a fresh store. */
export function describeRunStore(name: string, create: () => Promise<StoreHarness>): void {
  describe(`RunStore conformance: ${name}`, () => {
    let harness: StoreHarness
    let store: RunStore
    beforeEach(async () => {
      harness = await create()
      store = harness.store
    })
    afterEach(async () => {
      await store.close?.()
      await harness.cleanup?.()
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
      await store.saveRun(makeRunRecord('r1', { status: 'completed', result }))
      await store.saveAgent('r1', makeAgentRecord('r1', 'lead'))
      await store.saveAgent('r1', makeAgentRecord('r1', 'lead.a', { status: 'completed' }))
      const loaded = await store.loadRun('r1')
      expect(loaded?.run).toEqual(makeRunRecord('r1', { status: 'completed', result }))
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

    test('deleteRun removes the run and its agents', async () => {
      if (!store.deleteRun) return
      await store.saveRun(makeRunRecord('r5'))
      await store.saveAgent('r5', makeAgentRecord('r5', 'lead'))
      await store.deleteRun('r5')
      expect(await store.loadRun('r5')).toBeUndefined()
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
