import { describe, expect, test } from 'vitest'
import { started } from '../agent/agent-loop.js'
import { initialContext } from '../agent/context.js'
import { SnapshotError } from '../errors.js'
import {
  decodeAgentRecord,
  decodeRunRecord,
  encodeAgentRecordParts,
  encodeRecord,
  historyChunkSize,
  joinRecordParts,
} from './codec.js'
import { type AgentRecord, agentRecordSchema } from './records.js'

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

  test('the stored text is the record as JSON, which SQL and jq read, with no annotations when none is needed', () => {
    const plain = record({ ...base, result: { n: 1 } })
    const text = encodeRecord(plain)
    expect(JSON.parse(text)).toEqual(JSON.parse(JSON.stringify(plain)))
    expect(text).not.toContain('$superjson')
    const rich = JSON.parse(encodeRecord(record({ ...base, result: new Date(5) })))
    expect(rich.status).toBe('running')
    expect(rich.snapshot.context.result).toBe(new Date(5).toISOString())
    expect(rich.$superjson).toBeDefined()
  })

  test('a record not in the stored format is a SnapshotError naming the field', () => {
    expect(() => decodeAgentRecord(JSON.stringify({ version: 2 }), 'test')).toThrow(SnapshotError)
    expect(() => decodeAgentRecord('{"version":', 'test')).toThrow(/not a readable record/)
    expect(() => decodeAgentRecord('"garbage"', 'test')).toThrow(/the record is a string; expected an object/)
    expect(() => decodeAgentRecord('[]', 'test')).toThrow(/the record is an array; expected an object/)
    expect(() => decodeAgentRecord('null', 'test')).toThrow(/the record is empty; expected an object/)
  })

  test('a record of another format version says which it is and which this version reads', () => {
    for (const decode of [decodeAgentRecord, decodeRunRecord]) {
      expect(() => decode('{"version":7,"id":"r"}', 'src')).toThrow(
        'src: field "version": format version 7; this version of Cohort reads format version 1 (a record written by another version of Cohort?)',
      )
      expect(() => decode('{"version":"1","id":"r"}', 'src')).toThrow(
        'src: field "version": format version "1"; this version of Cohort reads format version 1',
      )
      expect(() => decode('{"id":"r"}', 'src')).toThrow(
        'src: field "version": missing; expected format version 1',
      )
    }
  })

  test('a context field this version does not know (from a newer writer) is kept', () => {
    const newer = record({ ...base, notes: ['kept'] } as AgentRecord['snapshot']['context'])
    const decoded = decodeAgentRecord(encodeRecord(newer), 'test')
    expect(decoded.snapshot.context).toMatchObject({ notes: ['kept'], task: base.task })
    expect(decoded).toEqual(JSON.parse(JSON.stringify(newer)))
  })

  test('a context written before runsAfter reads back with none: it waits for its dependsOn alone', () => {
    const { runsAfter: _, ...older } = { ...base, dependsOn: ['lead.a'] }
    const decoded = decodeAgentRecord(encodeRecord(record(older as typeof base)), 'test')
    expect(decoded.snapshot.context).toMatchObject({ dependsOn: ['lead.a'], runsAfter: [] })
  })

  test('a context written before receivedMessages reads back with none', () => {
    const { receivedMessages: _, ...older } = base
    const decoded = decodeAgentRecord(encodeRecord(record(older as typeof base)), 'test')
    expect(decoded.snapshot.context.receivedMessages).toEqual([])
  })

  test('keys named constructor, prototype or __proto__ in plain parts of a record that also needs superjson are kept', () => {
    const args = JSON.parse('{"constructor":"Point","prototype":{"x":1},"__proto__":{"y":2}}')
    const rich = record({
      ...base,
      result: { at: new Date(5), items: new Set([1]), constructor: 'Point' },
      pending: [{ action: 'call_tool', tool: 'define', args, callId: 'c1' }] as never,
      answers: { c0: { payload: { prototype: 'kept', when: new Date(6) } } } as never,
    })
    const decoded = decodeAgentRecord(encodeRecord(rich), 'test').snapshot.context
    expect(decoded.result).toEqual({ at: new Date(5), items: new Set([1]), constructor: 'Point' })
    // An own `__proto__` key is kept as one, as the plain JSON path keeps it, and sets no prototype.
    const readArgs = (decoded.pending[0] as { args: object }).args
    expect(JSON.stringify(readArgs)).toBe('{"constructor":"Point","prototype":{"x":1},"__proto__":{"y":2}}')
    expect(Object.getPrototypeOf(readArgs)).toBe(Object.prototype)
    expect(Object.hasOwn(readArgs, '__proto__')).toBe(true)
    expect(decoded.answers).toEqual({ c0: { payload: { prototype: 'kept', when: new Date(6) } } })
    expect(({} as Record<string, unknown>).y).toBeUndefined()
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
    // superjson keeps the fields left out as undefined ones: the reader still fills them in.
    expect(decoded).toMatchObject({
      runId: 'r1',
      agentId: 'lead.w',
      pending: [],
      answers: {},
      waitingOn: null,
    })
  })
})

describe('encodeRecord of a parent', () => {
  const links = (from: number, count: number) =>
    Array.from({ length: count }, (_, i) => ({
      localId: `w${from + i}`,
      id: `lead.w${from + i}`,
      agent: 'worker',
      task: `task "${from + i}"`,
    }))

  test('its children decode as written, after a launch that added more, and alongside other fields', () => {
    const first = record({ ...base, children: links(0, 3), delivered: ['w0'] })
    expect(decodeAgentRecord(encodeRecord(first), 'test')).toEqual(JSON.parse(JSON.stringify(first)))
    // The list is kept encoded while it lives; a launch makes a new list, which must be written.
    const second = record({
      ...first.snapshot.context,
      children: [...first.snapshot.context.children, ...links(3, 2)],
    })
    const decoded = decodeAgentRecord(encodeRecord(second), 'test')
    expect(decoded.snapshot.context.children.map((child) => child.localId)).toEqual([
      'w0',
      'w1',
      'w2',
      'w3',
      'w4',
    ])
    expect(decoded).toEqual(JSON.parse(JSON.stringify(second)))
    expect(decodeAgentRecord(encodeRecord(first), 'test').snapshot.context.children).toHaveLength(3)
  })

  test('a record whose children beside it are not a list of links is a SnapshotError naming the field', () => {
    const text = encodeRecord(record({ ...base, children: links(0, 1) }))
    const broken = text.replace(/"children":\[[^\]]*\]/, '"children":"w0"')
    expect(broken).not.toBe(text)
    expect(() => decodeAgentRecord(broken, 'memory:r1/lead.w')).toThrow(SnapshotError)
    expect(() => decodeAgentRecord(broken, 'memory:r1/lead.w')).toThrow(
      /memory:r1\/lead\.w: field "snapshot\.context\.children"/,
    )
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

describe('encodeAgentRecordParts', () => {
  const long = (count: number) =>
    record({
      ...base,
      result: { at: new Date(5) },
      messages: Array.from({ length: count }, (_, i) => ({ role: 'user' as const, content: `m${i}` })),
    })
  const stored = (full: AgentRecord, from = 0) => {
    const { json, annotations, chunks } = encodeAgentRecordParts(full, from)
    return { text: joinRecordParts(json, annotations), chunks: chunks.map((chunk) => chunk.json) }
  }

  test('a record keeps its last messages; the chunks before them are written from the first not yet stored', () => {
    expect(encodeAgentRecordParts(long(15)).chunks).toEqual([])
    expect(JSON.parse(encodeAgentRecordParts(long(15)).json).version).toBe(1)
    const parts = encodeAgentRecordParts(long(40), 17)
    expect(parts.chunks.map((chunk) => chunk.index)).toEqual([1])
    expect(JSON.parse(parts.chunks[0]!.json)).toEqual(long(40).snapshot.context.messages.slice(16, 32))
    expect(JSON.parse(parts.json).snapshot.context.messages).toHaveLength(40 - 2 * historyChunkSize)
    // Rich values still go through superjson, the chunks around them.
    const { text, chunks } = stored(long(40))
    expect(decodeAgentRecord(text, 'test', chunks)).toEqual(decodeAgentRecord(encodeRecord(long(40)), 'test'))
    expect(decodeAgentRecord(text, 'test', chunks).snapshot.context.result).toEqual({ at: new Date(5) })
  })

  test('a record with chunks is version 2 as stored, so a reader from before chunks refuses it instead of reading a short history', () => {
    const { text, chunks } = stored(long(40))
    const asStored = JSON.parse(text)
    expect(asStored.version).toBe(2)
    // What a reader that knows no chunks did: validate the record as it is.
    const older = agentRecordSchema.safeParse(asStored)
    expect(older.success).toBe(false)
    expect(older.error?.issues[0]?.path).toEqual(['version'])
    expect(decodeAgentRecord(text, 'test', chunks).version).toBe(1)
  })

  test('a history that does not add up to what the record says is a SnapshotError naming the field', () => {
    const { text, chunks } = stored(long(40))
    // More chunks than it needs (one a crash left behind) are not read.
    expect(decodeAgentRecord(text, 'test', [...chunks, '[{"role":']).snapshot.context.messages).toHaveLength(
      40,
    )
    expect(() => decodeAgentRecord(text, 'test', chunks.slice(0, 1))).toThrow(
      /field "historyLength": the record has 40 messages, 8 of them its own, and its history holds 16 more/,
    )
    expect(() => decodeAgentRecord(text, 'test', [chunks[0]!, '[{"role":'])).toThrow(
      /field "history": chunk 1 is not JSON/,
    )
    expect(() => decodeAgentRecord(text, 'test', [chunks[0]!, '{}'])).toThrow(
      /chunk 1 is not a list of messages/,
    )
    expect(() =>
      decodeAgentRecord(text, 'test', [
        chunks[0]!,
        `${chunks[1]!.slice(0, -1)},{"role":"user","content":"x"}]`,
      ]),
    ).toThrow(/field "history": its history holds 33 messages before the record's own; expected 32/)
    const wrongLength = text.replace('"historyLength":40', '"historyLength":"40"')
    expect(() => decodeAgentRecord(wrongLength, 'test', chunks)).toThrow(
      /field "historyLength": "40"; expected the count/,
    )
  })
})
