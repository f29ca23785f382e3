import { expect, test } from 'vitest'
import { RunBusyError, StoreError } from '../errors.js'
import { AgentWriter } from './agent-writer.js'
import { memoryStore } from './memory-store.js'
import type { AgentRecord, RunStore } from './records.js'

function recordOf(id: string, version = 0, messages: unknown[] = []): AgentRecord {
  return { id, version, snapshot: { context: { messages } } } as unknown as AgentRecord
}

function writerOn(store: RunStore, versions = new Map<string, number>()) {
  return new AgentWriter<{ id: string }>(
    store,
    'r1',
    10_000,
    () => {},
    (agent) => recordOf(agent.id, versions.get(agent.id) ?? 0),
  )
}

test("each write says how many of the agent's messages its last write stored: a history that grew appends, one that changed is written whole", async () => {
  const said: number[][] = []
  const store: RunStore = {
    ...memoryStore(),
    async saveAgents(_runId, _records, storedMessages) {
      said.push([...(storedMessages ?? [])])
    },
  }
  const system = { role: 'system', content: 's' }
  const task = { role: 'user', content: 't' }
  const reply = { role: 'assistant', content: 'r' }
  let histories: Record<string, unknown[]> = { a: [system, task], b: [system, task] }
  const writer = new AgentWriter<{ id: string }>(
    store,
    'r1',
    10_000,
    () => {},
    (agent) => recordOf(agent.id, 0, histories[agent.id]),
  )
  const write = async () => {
    writer.schedule({ id: 'a' })
    writer.schedule({ id: 'b' })
    await writer.flush()
  }
  await write()
  const retold = { ...task }
  histories = { a: [system, task, reply], b: [system, retold, reply] }
  await write()
  histories = { a: [system, task, reply], b: [system, retold, reply, reply] }
  await write()
  // First writes store everything; b's second history replaced a message, so it is written whole.
  expect(said).toEqual([
    [0, 0],
    [2, 0],
    [3, 3],
  ])
})

test('the agents changed in one task are one batch, one batch is in flight at a time, and what changes meanwhile is the next batch', async () => {
  const batches: string[][] = []
  const store: RunStore = {
    ...memoryStore(),
    async saveAgent() {
      throw new Error('a batch goes through saveAgents')
    },
    async saveAgents(_runId, records) {
      batches.push(records.map((record) => record.id))
      await new Promise((resolve) => setTimeout(resolve, 5))
    },
  }
  const writer = writerOn(store)
  const told: string[] = []
  for (const id of ['a', 'b', 'c']) writer.schedule({ id }, () => told.push(id))
  // Changed again in the same turn: still one write of each.
  writer.schedule({ id: 'a' }, () => told.push('a again'))
  await new Promise((resolve) => setImmediate(resolve))
  // Changes made while the first batch is in flight are the next batch.
  writer.schedule({ id: 'b' })
  writer.schedule({ id: 'd' })
  expect(told).toEqual([])
  await writer.flush()
  expect(batches).toEqual([
    ['a', 'b', 'c'],
    ['b', 'd'],
  ])
  expect(told).toEqual(['a', 'a again', 'b', 'c'])
})

test('a record is made when its batch starts, so it holds the latest state', async () => {
  const saved: AgentRecord[] = []
  const store: RunStore = {
    ...memoryStore(),
    async saveAgent(_runId, record) {
      saved.push(record)
    },
  }
  const versions = new Map([['a', 1]])
  const writer = writerOn(store, versions)
  writer.schedule({ id: 'a' })
  versions.set('a', 2)
  await writer.written({ id: 'a' })
  expect(saved.map((record) => (record as unknown as { version: number }).version)).toEqual([2])
})

test('a failed write fails every waiter with a StoreError that names the agents, and tells nobody it was stored', async () => {
  const errors: unknown[] = []
  const store: RunStore = {
    ...memoryStore(),
    async saveAgent() {
      throw new Error('ENOSPC: no space left on device')
    },
  }
  const writer = new AgentWriter<{ id: string }>(
    store,
    'r1',
    10_000,
    (error) => errors.push(error),
    (agent) => recordOf(agent.id),
  )
  let stored = false
  writer.schedule({ id: 'x' }, () => {
    stored = true
  })
  const waiting = writer.written({ id: 'y' })
  await expect(waiting).rejects.toBeInstanceOf(StoreError)
  await expect(waiting).rejects.toThrow(/store write of agents x, y \(run r1\) failed: ENOSPC/)
  await expect(writer.flush()).rejects.toBeInstanceOf(StoreError)
  expect(stored).toBe(false)
  expect(errors).toHaveLength(1)
})

test('a store that hangs fails the batch after the timeout', async () => {
  const store: RunStore = {
    ...memoryStore(),
    saveAgent: () => new Promise(() => {}),
  }
  const writer = new AgentWriter<{ id: string }>(
    store,
    'r1',
    20,
    () => {},
    (agent) => recordOf(agent.id),
  )
  await expect(writer.written({ id: 'slow' })).rejects.toThrow(/did not finish within 20 ms/)
})

test('with no batch in flight a write starts in the task that asked for it, before the next turn of the event loop (group commit)', async () => {
  const order: string[] = []
  const store: RunStore = {
    ...memoryStore(),
    async saveAgent(_runId, record) {
      order.push(`write ${record.id}`)
    },
  }
  const writer = writerOn(store)
  // Two agents whose replies came due in two timer callbacks of the same turn: the first is
  // written before the second's callback runs, and nobody waits for the turn to end.
  await new Promise<void>((resolve) => {
    setTimeout(() => writer.schedule({ id: 'a' }, () => order.push('stored a')), 1)
    setTimeout(() => {
      order.push('b replied')
      writer.schedule({ id: 'b' }, () => order.push('stored b'))
    }, 1)
    setTimeout(() => setImmediate(resolve), 2)
  })
  await writer.flush()
  expect(order.slice(0, 3)).toEqual(['write a', 'stored a', 'b replied'])
  expect(order).toContain('stored b')
})

test('waiting for a state that is stored, or in the batch in flight, writes it no second time', async () => {
  const saved: string[] = []
  let landed: () => void = () => {}
  const store: RunStore = {
    ...memoryStore(),
    async saveAgents(_runId, records) {
      saved.push(...records.map((record) => record.id))
      await new Promise<void>((resolve) => {
        landed = resolve
      })
    },
  }
  // What changed since its record was made: 'a' and 'b' do not change, 'c' does.
  const changed = new Set<string>()
  const writer = new AgentWriter<{ id: string }>(
    store,
    'r1',
    10_000,
    () => {},
    (agent) => {
      changed.delete(agent.id)
      return recordOf(agent.id)
    },
    (agent) => !changed.has(agent.id),
  )
  for (const id of ['a', 'b', 'c']) writer.schedule({ id })
  await new Promise((resolve) => setImmediate(resolve))
  changed.add('c')
  const told: string[] = []
  const waits = ['a', 'c'].map((id) => writer.written({ id }).then(() => told.push(id)))
  await new Promise((resolve) => setImmediate(resolve))
  // 'a' is told when the batch it is in lands; 'c' needs a write of its own.
  expect(told).toEqual([])
  landed()
  await new Promise((resolve) => setImmediate(resolve))
  expect(told).toEqual(['a'])
  landed()
  await Promise.all(waits)
  expect(told).toEqual(['a', 'c'])
  // Stored and unchanged: told at once, with nothing written.
  await writer.written({ id: 'b' })
  expect(saved).toEqual(['a', 'b', 'c', 'c'])
})

test('a record that cannot be made fails the writer with an error naming its agent', async () => {
  const errors: unknown[] = []
  const writer = new AgentWriter<{ id: string }>(
    memoryStore(),
    'r1',
    10_000,
    (error) => errors.push(error),
    (agent) => {
      if (agent.id === 'lead.bad') throw new RangeError('Maximum call stack size exceeded')
      return recordOf(agent.id)
    },
  )
  writer.schedule({ id: 'lead' })
  writer.schedule({ id: 'lead.bad' })
  await expect(writer.flush()).rejects.toThrow(
    'store write of agent lead.bad (run r1) failed: Maximum call stack size exceeded',
  )
  expect(errors).toHaveLength(1)
  expect(errors[0]).toBeInstanceOf(StoreError)
})

test("a writer stopped (its run is another process's now) writes nothing more, and tells those waiting why", async () => {
  const written: string[] = []
  const store: RunStore = {
    ...memoryStore(),
    async saveAgents(_runId, records) {
      for (const record of records) written.push(record.id)
    },
  }
  const writer = writerOn(store)
  writer.schedule({ id: 'a' })
  await writer.flush()
  const waiting = writer.written({ id: 'b' })
  const reason = new Error('taken over')
  writer.stop(reason)
  await expect(waiting).rejects.toBe(reason)
  writer.schedule({ id: 'c' })
  await writer.flush().catch(() => {})
  expect(written).toEqual(['a'])
})

test('a batch waits for the writer to be allowed, and a refusal (the run lost to another process) writes nothing', async () => {
  const written: string[] = []
  const errors: unknown[] = []
  const store: RunStore = {
    ...memoryStore(),
    async saveAgents(_runId, records) {
      for (const record of records) written.push(record.id)
    },
  }
  let allowed: Promise<void> | undefined
  const writer = new AgentWriter<{ id: string }>(
    store,
    'r1',
    10_000,
    (error) => errors.push(error),
    (agent) => recordOf(agent.id),
    () => false,
    () => allowed,
  )
  writer.schedule({ id: 'a' })
  await writer.flush()
  const lost = new RunBusyError('run r1 was taken over', 0)
  allowed = Promise.reject(lost)
  allowed.catch(() => {})
  writer.schedule({ id: 'b' })
  await expect(writer.flush()).rejects.toBe(lost)
  expect(written).toEqual(['a'])
  expect(errors).toEqual([lost])
})
