import { describe, expect, test } from 'vitest'
import { started } from '../agent/agent-loop.js'
import { initialContext } from '../agent/context.js'
import { SnapshotError } from '../errors.js'
import { decodeAgentRecord, type EncodedMessages, encodeAgentRecord, encodeRecord } from './codec.js'
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

  test('the context leaves out the fields of the record itself and those at their initial value, and reads back whole', () => {
    const fresh = record(base)
    const text = encodeRecord(fresh)
    const stored = JSON.parse(text).record.json.snapshot.context
    expect(Object.keys(stored).sort()).toEqual(['busyMs', 'phase', 'startedAt', 'task', 'turn', 'usage'])
    expect(decodeAgentRecord(text, 'test')).toEqual(JSON.parse(JSON.stringify(fresh)))
    // The same fields holding anything else are written, a copy that differs from the record's included.
    const busy = record({
      ...base,
      runId: 'r0',
      parentId: null,
      depth: 0,
      pending: [{ action: 'finish', result: 0 }],
      delivered: ['w0'],
      dependsOn: ['lead.a'],
      inbox: [{ from: 'lead', text: 'hi' }],
      processes: [
        {
          turn: 0,
          command: 'true',
          exitCode: 0,
          signal: null,
          durationMs: 1,
          stderrTail: '',
          workspace: '.',
        },
      ],
      conflicts: [{ file: 'a.txt', agents: ['lead.w', 'lead.v'] }],
      answers: { '0.0': { approved: true } },
      waitingOn: [],
      waitCallId: 'call_1',
      timeoutMs: 0,
      deadline: 5,
      fallback: { value: null },
      awaiting: { kind: 'input', callId: 'c', key: '0.0', tool: 't', args: {}, prompt: 'p' },
      endedAt: 0,
      priority: -1,
      repairs: 1,
      retries: 2,
    })
    const busyText = encodeRecord(busy)
    expect(Object.keys(JSON.parse(busyText).record.json.snapshot.context)).toHaveLength(
      Object.keys(busy.snapshot.context).length - 4,
    )
    expect(decodeAgentRecord(busyText, 'test')).toEqual(JSON.parse(JSON.stringify(busy)))
  })

  test('a record as the runtime makes it is written field by field, as the general encoder writes it', () => {
    // Without its undefined output and error, a record takes the general path: the same text.
    const general = (written: AgentRecord): AgentRecord => {
      const { output: _output, error: _error, ...snapshot } = written.snapshot
      return { ...written, snapshot: snapshot as AgentRecord['snapshot'] }
    }
    const odd = 'a "name"\\ with \u0001 control, é, 😀 and a lone \ud800'
    const records: AgentRecord[] = [
      record(base),
      { ...record({ ...base, waitingOn: ['a'], pending: [] }), status: 'suspended' },
      { ...record({ ...base, result: { answer: [1, 'two', null] }, endedAt: 2 }), status: 'completed' },
      { ...record(base), id: odd, name: odd, parentId: null, runId: odd },
    ]
    records[1]!.snapshot.value = { suspended: 'children' }
    records[2]!.snapshot.status = 'done'
    records[2]!.snapshot.value = 'completed'
    for (const written of records) {
      expect(encodeRecord(written)).toBe(encodeRecord(general(written)))
      expect(decodeAgentRecord(encodeRecord(written), 'test').snapshot.context).toEqual(
        written.snapshot.context,
      )
    }
    // A result JSON cannot keep still goes through superjson.
    const dated = record({ ...base, result: new Date(5) })
    expect(decodeAgentRecord(encodeRecord(dated), 'test').snapshot.context.result).toEqual(new Date(5))
  })

  test('a record of format 2, with the whole context in it, is read', () => {
    const parent = record({ ...base, delivered: ['w0'] })
    const { messages, children, ...context } = parent.snapshot.context
    const earlier = JSON.stringify({
      format: 'cohort-agent/2',
      messages,
      children,
      record: { json: { ...parent, snapshot: { ...parent.snapshot, context } } },
    })
    expect(decodeAgentRecord(earlier, 'test')).toEqual(JSON.parse(JSON.stringify(parent)))
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

describe('encodeAgentRecord', () => {
  const reply = (n: number) => [
    { role: 'assistant' as const, content: `{"action":"call_tool","tool":"t","args":{"n":${n}}}` },
    { role: 'user' as const, content: `[call_tool t] ok ${n}` },
  ]

  test('each write, given the last one, encodes what a write from nothing does', () => {
    const last: EncodedMessages = { messages: undefined, head: undefined, rest: undefined }
    let context = base
    for (let turn = 1; turn <= 4; turn++) {
      context = { ...context, turn, messages: [...context.messages, ...reply(turn)] }
      const written = record(context)
      expect(encodeAgentRecord(written, last)).toBe(encodeRecord(written))
      expect(last.messages).toBe(context.messages)
      // A write with no new message (another field changed) keeps the same text for the list.
      const same = record({ ...context, busyMs: turn })
      expect(encodeAgentRecord(same, last)).toBe(encodeRecord(same))
    }
    expect(
      decodeAgentRecord(encodeAgentRecord(record(context), last), 'test').snapshot.context.messages,
    ).toEqual(context.messages)
  })

  test('a kept text reads as one written from nothing, with a long first message and past the flattening bound', () => {
    const system = {
      role: 'system' as const,
      content: `You are a worker. ${'Follow the rules. '.repeat(40)}`,
    }
    const long = { role: 'user' as const, content: 'x'.repeat(70_000) }
    // Two agents of one kind share the system message object, as the orchestrator's agents do.
    const first: EncodedMessages = { messages: undefined, head: undefined, rest: undefined }
    const second: EncodedMessages = { messages: undefined, head: undefined, rest: undefined }
    let a: AgentRecord['snapshot']['context'] = {
      ...base,
      messages: [system, { role: 'user', content: 'a' }],
    }
    const b = { ...base, agentId: 'b', messages: [system, { role: 'user' as const, content: 'b' }] }
    for (let turn = 1; turn <= 3; turn++) {
      a = { ...a, turn, messages: [...a.messages, ...reply(turn)] }
      expect(encodeAgentRecord(record(a), first)).toBe(encodeRecord(record(a)))
      expect(encodeAgentRecord(record(b), second)).toBe(encodeRecord(record(b)))
    }
    a = { ...a, messages: [...a.messages, long] }
    expect(encodeAgentRecord(record(a), first)).toBe(encodeRecord(record(a)))
    a = { ...a, messages: [...a.messages, ...reply(4)] }
    const text = encodeAgentRecord(record(a), first)
    expect(text).toBe(encodeRecord(record(a)))
    expect(decodeAgentRecord(text, 'test').snapshot.context.messages).toEqual(a.messages)
  })

  test('a history that does not begin with the last one written is encoded whole', () => {
    const last: EncodedMessages = { messages: undefined, head: undefined, rest: undefined }
    const long = { ...base, messages: [...base.messages, ...reply(1), ...reply(2)] }
    encodeAgentRecord(record(long), last)
    // Shorter (a record from before, written again), and the same length with a message replaced.
    const shorter = record({ ...long, messages: long.messages.slice(0, 3) })
    expect(encodeAgentRecord(shorter, last)).toBe(encodeRecord(shorter))
    const replaced = [...long.messages]
    replaced[2] = { role: 'assistant', content: 'other' }
    const rewritten = record({ ...long, messages: replaced })
    expect(encodeAgentRecord(rewritten, last)).toBe(encodeRecord(rewritten))
    expect(decodeAgentRecord(encodeAgentRecord(rewritten, last), 'test').snapshot.context.messages).toEqual(
      replaced,
    )
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

  test('a record of the earlier format, with the children inside it, is read', () => {
    const parent = record({ ...base, children: links(0, 2) })
    const { messages, ...context } = parent.snapshot.context
    const earlier = JSON.stringify({
      format: 'cohort-agent/1',
      messages,
      record: { json: { ...parent, snapshot: { ...parent.snapshot, context } } },
    })
    expect(decodeAgentRecord(earlier, 'test')).toEqual(JSON.parse(JSON.stringify(parent)))
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
