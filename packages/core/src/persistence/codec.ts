import superjson from 'superjson'
import type { z } from 'zod'
import { type AgentContext, type ChildLink, copyContext } from '../agent/context.js'
import { InvalidInputError, SnapshotError } from '../errors.js'
import type { ChatMessage } from '../models/types.js'
import {
  type AgentRecord,
  agentRecordSchema,
  isValidRunId,
  type RunId,
  type RunRecord,
  runRecordSchema,
} from './records.js'

/**
 * Records are superjson text, so Dates, Maps, Sets, BigInt and Errors in results survive.
 * An agent's messages are strings only and make up most of its record: they are written as
 * plain JSON beside the superjson part, which is about ten times faster to encode. So is its
 * list of children, which a parent of thousands would otherwise encode again at every write.
 */
export function encodeRecord(record: RunRecord | AgentRecord): string {
  if (!('snapshot' in record)) return encodeValue(record)
  const { messages, children } = record.snapshot.context
  const context = withoutLists(record.snapshot.context)
  const encoded = encodeValue({ ...record, snapshot: { ...record.snapshot, context } })
  const lists = `"messages":${encodeMessages(messages)},"children":${encodeChildren(children)}`
  return `{"format":"${agentFormat}",${lists},"record":${encoded}}`
}

type EncodedContext = Omit<AgentContext, 'messages' | 'children'> & {
  messages: undefined
  children: undefined
}

/**
 * The context without its messages and children (both encoders leave out a field that is
 * undefined). A copy made by `copyContext` has the one hidden class of every context, where a
 * rest copy came out in dictionary mode: three times the memory, and a slower `JSON.stringify`.
 * A context read back with fields this version does not know keeps them through the rest copy.
 */
function withoutLists(context: AgentContext): EncodedContext {
  const copy = copyContext(context) as unknown as EncodedContext
  copy.messages = undefined
  copy.children = undefined
  if (fieldCount(copy) === fieldCount(context)) return copy
  const { messages: _, children: __, ...rest } = context
  return rest as EncodedContext
}

/**
 * The JSON of a list of children (strings only), kept as long as the list lives: a step that
 * launches nothing keeps its list, so a parent's writes encode its children once per launch. A
 * launch makes a new list (`appendChildren`); none is ever changed in place.
 */
const childrenJson = new WeakMap<readonly ChildLink[], string>()

function encodeChildren(children: readonly ChildLink[]): string {
  if (children.length === 0) return '[]'
  let json = childrenJson.get(children)
  if (json === undefined) {
    json = JSON.stringify(children)
    childrenJson.set(children, json)
  }
  return json
}

function fieldCount(object: object): number {
  let count = 0
  for (const _ in object) count++
  return count
}

/** Superjson text; most records hold nothing but JSON, and superjson's walk (which tracks every path) is skipped for them. */
function encodeValue(value: object): string {
  return isPlainJson(value) ? `{"json":${JSON.stringify(value)}}` : superjson.stringify(value)
}

/**
 * The JSON of long messages, and of every message past the first few of a history, kept as long
 * as the message lives: a history only grows and its messages never change, so a write encodes
 * the messages of its own step, not the whole history again. A short message early in a history
 * is encoded again instead: cheaper than remembering it (a WeakMap entry took about 2 µs to add,
 * seven of them most of a short agent's write).
 */
const messageJson = new WeakMap<object, string>()

const rememberedFrom = 16
const rememberedLength = 256

function encodeMessages(messages: readonly ChatMessage[]): string {
  let encoded = '['
  for (let index = 0; index < messages.length; index++) {
    const message = messages[index]!
    let json: string | undefined
    if (
      index < rememberedFrom &&
      typeof message.content === 'string' &&
      message.content.length < rememberedLength
    )
      json = JSON.stringify(message)
    else {
      json = messageJson.get(message)
      if (json === undefined) {
        json = JSON.stringify(message)
        messageJson.set(message, json)
      }
    }
    encoded += index === 0 ? json : `,${json}`
  }
  return `${encoded}]`
}

/** True when `JSON.stringify` keeps `value` exactly: no Dates, Maps, Sets, BigInts, undefined in arrays… */
function isPlainJson(value: unknown): boolean {
  visitsLeft = maxPlainVisits
  return isPlain(value, 0)
}

/**
 * Deeper than any record needs, a cycle, or more values than a record holds (an object shared
 * at many places of a value is walked at each): superjson's walk decides.
 */
const maxPlainDepth = 200
const maxPlainVisits = 100_000
let visitsLeft = 0

function isPlain(value: unknown, depth: number): boolean {
  if (--visitsLeft < 0) return false
  if (value === null || typeof value === 'string' || typeof value === 'boolean') return true
  if (typeof value === 'number') return Number.isFinite(value)
  if (typeof value !== 'object' || depth > maxPlainDepth) return false
  if (Array.isArray(value)) {
    for (let index = 0; index < value.length; index++) {
      const item = value[index]
      if (item === undefined || !isPlain(item, depth + 1)) return false
    }
    return true
  }
  const prototype = Object.getPrototypeOf(value)
  if (prototype !== Object.prototype && prototype !== null) return false
  for (const key in value) {
    const field = (value as Record<string, unknown>)[key]
    // An undefined field is dropped by both encoders alike.
    if (field !== undefined && !isPlain(field, depth + 1)) return false
  }
  return true
}

/** Format 2 writes the children beside the record too; records of format 1 are still read. */
const agentFormat = 'cohort-agent/2'
const agentFormatWithoutChildren = 'cohort-agent/1'

export function decodeRunRecord(text: string, source: string): RunRecord {
  return decode(text, source, runRecordSchema) as RunRecord
}

export function decodeAgentRecord(text: string, source: string): AgentRecord {
  return decode(text, source, agentRecordSchema) as AgentRecord
}

function decode(text: string, source: string, schema: z.ZodType): unknown {
  let value: unknown
  try {
    value = parseRecord(text)
  } catch (error) {
    throw new SnapshotError(
      source,
      `not a readable record (${(error as Error).message}); expected superjson text`,
    )
  }
  if (value === undefined || value === null)
    throw new SnapshotError(source, 'empty record; expected an object')
  const checked = schema.safeParse(value)
  if (!checked.success) {
    const issue = checked.error.issues[0]!
    throw new SnapshotError(source, issue.message, issue.path.join('.') || '(root)')
  }
  return checked.data
}

function parseRecord(text: string): unknown {
  const parsed = JSON.parse(text) as {
    format?: unknown
    messages?: unknown
    children?: unknown
    record?: unknown
    json?: unknown
  }
  if (parsed?.format !== agentFormat && parsed?.format !== agentFormatWithoutChildren)
    return superjson.deserialize(parsed as Parameters<typeof superjson.deserialize>[0])
  const record = superjson.deserialize(parsed.record as Parameters<typeof superjson.deserialize>[0]) as {
    snapshot?: { context?: Record<string, unknown> }
  }
  const context = record?.snapshot?.context
  if (context) {
    context.messages = parsed.messages
    if (parsed.format === agentFormat) context.children = parsed.children
  }
  return record
}

/** Refuses run ids that could escape a folder or a key space (`../x`, `a/b`, empty). */
export function assertRunId(runId: unknown): asserts runId is RunId {
  if (!isValidRunId(runId)) {
    throw new InvalidInputError(
      `invalid run id ${JSON.stringify(String(runId).slice(0, 80))}: expected 1-64 letters, digits, "_" or "-"`,
    )
  }
}
