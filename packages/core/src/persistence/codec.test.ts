import { describe, expect, test } from 'vitest'
import { started } from '../agent/agent-loop.js'
import { initialContext } from '../agent/context.js'
import { decodeAgentRecord, encodeRecord } from './codec.js'
import type { AgentRecord } from './records.js'

function record(context: AgentRecord['snapshot']['context']): AgentRecord {
  return {
    version: 1,
    runId: 'r1',
    id: 'lead.w',
    name: 'worker',
    parentId: 'lead',
    depth: 1,
    status: 'running',
    updatedAt: 1_700_000_000_000,
    snapshot: {
      status: 'active',
      output: undefined,
      error: undefined,
      value: 'running',
      historyValue: {},
      context,
      children: {},
    } as unknown as AgentRecord['snapshot'],
  }
}

const base = started(
  initialContext({
    runId: 'r1',
    agentId: 'lead.w',
    name: 'worker',
    parentId: 'lead',
    depth: 1,
    task: 'a "quoted"\ntask',
    systemMessage: { role: 'system', content: 'you work' },
  }),
  null,
)

describe('encodeRecord', () => {
  test('an agent record decodes to what JSON would give, also after a step that replaced some of its parts', () => {
    const first = record({
      ...base,
      pending: [{ action: 'call_tool', tool: 't', args: { n: 1.5, ok: true } }],
    })
    const plain = JSON.parse(JSON.stringify(first))
    expect(decodeAgentRecord(encodeRecord(first), 'test')).toEqual(plain)
    // A later step shares most parts with the first and replaces a few (messages are kept encoded).
    const second = record({
      ...first.snapshot.context,
      pending: [],
      turn: 1,
      usage: { promptTokens: 3, completionTokens: 4, cost: 0.5 },
    })
    const decoded = decodeAgentRecord(encodeRecord(second), 'test')
    expect(decoded.snapshot.context).toMatchObject({
      pending: [],
      turn: 1,
      usage: { promptTokens: 3, completionTokens: 4, cost: 0.5 },
      task: 'a "quoted"\ntask',
    })
    expect(decoded).toEqual(JSON.parse(JSON.stringify(second)))
  })

  test('a context field this version does not know (from a newer writer) is kept', () => {
    const newer = record({ ...base, notes: ['kept'] } as AgentRecord['snapshot']['context'])
    const decoded = decodeAgentRecord(encodeRecord(newer), 'test')
    expect(decoded.snapshot.context).toMatchObject({ notes: ['kept'], task: base.task })
    expect(decoded).toEqual(JSON.parse(JSON.stringify(newer)))
  })

  test('a value JSON cannot keep goes through superjson', () => {
    const plainResult = { at: 'noon' }
    expect(decodeAgentRecord(encodeRecord(record({ ...base, result: plainResult })), 'test')).toMatchObject({
      snapshot: { context: { result: { at: 'noon' } } },
    })
    const rich = record({
      ...base,
      result: { at: new Date(5), big: 10n, items: new Set([1]), none: Number.NaN },
    })
    const decoded = decodeAgentRecord(encodeRecord(rich), 'test').snapshot.context
    expect(decoded.result).toEqual({ at: new Date(5), big: 10n, items: new Set([1]), none: Number.NaN })
    expect(decoded.messages).toEqual(base.messages)
  })
})

describe('encodeRecord of unusual results', () => {
  test('a result that shares one object at many places, or holds a cycle, is encoded and decoded, and quickly', () => {
    let shared: unknown = { leaf: true }
    // 65,536 paths to one leaf: more values than the plain-JSON walk visits, so superjson writes it.
    for (let level = 0; level < 16; level++) shared = [shared, shared]
    const cyclic: Record<string, unknown> = { name: 'loop' }
    cyclic.self = cyclic
    for (const result of [shared, cyclic]) {
      const started = performance.now()
      const decoded = decodeAgentRecord(encodeRecord(record({ ...base, result })), 'test')
      expect(performance.now() - started).toBeLessThan(5_000)
      expect(decoded.snapshot.context.result).toEqual(result)
    }
  })
})
