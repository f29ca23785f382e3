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
  return encodeAgentRecord(record)
}

/**
 * An agent's messages as its last write encoded them: the JSON of the first (`head`, most often
 * the kind's system message) and of the others joined by commas (`rest`, '' when there are none),
 * undefined before its first write. A history only grows, by new lists that keep the old one's
 * messages: a store that keeps this for each agent encodes only the messages added since
 * (`encodeAgentRecord`).
 */
export interface EncodedMessages {
  messages: readonly ChatMessage[] | undefined
  head: string | undefined
  rest: string | undefined
}

/**
 * `encodeRecord` for an agent, given what the agent's last write encoded of its messages (when
 * the caller keeps it); it updates `last` for the next write. Encoding the whole history at every
 * write was a third of a write's time in a fan-out of 1,000 × 3 × 50 ms, and most of its garbage.
 */
export function encodeAgentRecord(record: AgentRecord, last?: EncodedMessages): string {
  const { messages, children } = record.snapshot.context
  const context = storedContext(record)
  const encoded =
    runtimeRecordJson(record, context) ??
    encodeValue({ ...record, snapshot: { ...record.snapshot, context } })
  const { head, rest } = encodeMessages(messages, last)
  const tail = `${rest === '' ? '' : ','}${rest}],"children":${encodeChildren(children)},"record":${encoded}}`
  if (last === undefined || tail.length > maxFlattenedChars) return `${messagesPrefix}${head}${tail}`
  // Kept by the store: the first message's part is shared with the other agents of its kind.
  flatten(tail)
  if (rest !== '') last.rest = tail.slice(1, 1 + rest.length)
  return keptHead(messages[0], head) + tail
}

/**
 * What a store keeps of a text is two strings: the record's beginning up to the end of its first
 * message, shared by every agent whose history begins with the same message object (the kind's
 * system message), and the rest as one flat string, of which what the next write reuses is a
 * slice. As `JSON.stringify` and joining build it, a text is a tree of about 30 pieces: 2.0 KB of
 * memory for 1.4 KB of text in a fan-out's worker, kept for every agent of a run and copied by
 * the young-generation collector while the run lasts. Past this length, a flattening's copy would
 * cost more than the pieces.
 */
const maxFlattenedChars = 64 * 1024

const keptHeads = new WeakMap<ChatMessage, string>()

function keptHead(first: ChatMessage | undefined, head: string): string {
  // A short first message costs less joined again than remembered (see `messageJson`).
  if (first === undefined || head.length < rememberedLength) return messagesPrefix + head
  let kept = keptHeads.get(first)
  if (kept === undefined) {
    kept = messagesPrefix + head
    flatten(kept)
    keptHeads.set(first, kept)
  }
  return kept
}

/** Reading a character makes V8 join a string's pieces into one flat string, in place. */
function flatten(text: string): void {
  text.charCodeAt(0)
}

type StoredContext = { [key in keyof AgentContext]: AgentContext[key] | undefined }

/**
 * The context as it is written: without its messages and children, without its copy of the
 * record's own fields (run, id, name, parent, depth), and without the fields that still hold
 * their initial value (an empty list, null, 0), which the reader supplies (`contextDefaults`).
 * Both encoders leave out a field that is undefined. Most of a short agent's context is such
 * fields, and `JSON.stringify` took a third less time without them.
 *
 * A copy made by `copyContext` has the one hidden class of every context, where a rest copy came
 * out in dictionary mode: three times the memory, and a slower `JSON.stringify`. A context read
 * back with fields this version does not know keeps them through the rest copy.
 */
function storedContext(record: AgentRecord): StoredContext {
  const { context } = record.snapshot
  let copy = copyContext(context) as StoredContext
  if (fieldCount(copy) !== fieldCount(context)) copy = { ...context }
  copy.messages = undefined
  copy.children = undefined
  if (context.runId === record.runId) copy.runId = undefined
  if (context.agentId === record.id) copy.agentId = undefined
  if (context.name === record.name) copy.name = undefined
  if (context.parentId === record.parentId) copy.parentId = undefined
  if (context.depth === record.depth) copy.depth = undefined
  if (isEmptyList(context.pending)) copy.pending = undefined
  if (isEmptyList(context.delivered)) copy.delivered = undefined
  if (isEmptyList(context.dependsOn)) copy.dependsOn = undefined
  if (isEmptyList(context.inbox)) copy.inbox = undefined
  if (isEmptyList(context.processes)) copy.processes = undefined
  if (isEmptyList(context.conflicts)) copy.conflicts = undefined
  if (isEmptyObject(context.answers)) copy.answers = undefined
  if (context.waitingOn === null) copy.waitingOn = undefined
  if (context.waitCallId === null) copy.waitCallId = undefined
  if (context.timeoutMs === null) copy.timeoutMs = undefined
  if (context.deadline === null) copy.deadline = undefined
  if (context.fallback === null) copy.fallback = undefined
  if (context.awaiting === null) copy.awaiting = undefined
  if (context.endedAt === null) copy.endedAt = undefined
  if (context.priority === 0) copy.priority = undefined
  if (context.repairs === 0) copy.repairs = undefined
  if (context.retries === 0) copy.retries = undefined
  return copy
}

/**
 * What a record of format 3 leaves out of its context when the field holds it. `storedContext`
 * spells the same fields out: a loop over this table, with its keyed reads and writes, took
 * 0.68 µs a write against 0.08; the codec's test of a fresh context checks that the two agree.
 */
const contextDefaults: { [key in keyof AgentContext]?: () => unknown } = {
  pending: () => [],
  delivered: () => [],
  dependsOn: () => [],
  inbox: () => [],
  processes: () => [],
  conflicts: () => [],
  answers: () => ({}),
  waitingOn: () => null,
  waitCallId: () => null,
  timeoutMs: () => null,
  deadline: () => null,
  fallback: () => null,
  awaiting: () => null,
  endedAt: () => null,
  priority: () => 0,
  repairs: () => 0,
  retries: () => 0,
}

/** Puts back what `storedContext` left out (superjson keeps a field that was undefined, as undefined). */
function restoreContext(context: Record<string, unknown>, record: Record<string, unknown>): void {
  context.runId ??= record.runId
  context.agentId ??= record.id
  context.name ??= record.name
  if (context.parentId === undefined) context.parentId = record.parentId
  context.depth ??= record.depth
  for (const [key, initial] of Object.entries(contextDefaults)) {
    if (context[key] === undefined) context[key] = initial()
  }
}

function isEmptyList(value: unknown): boolean {
  return Array.isArray(value) && value.length === 0
}

function isEmptyObject(value: unknown): boolean {
  if (value === null || typeof value !== 'object') return false
  for (const _ in value) return false
  return true
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

/**
 * The superjson text `encodeValue` gives a record as the runtime makes it (`toAgentRecord`: these
 * nine fields, a machine snapshot of these seven) whose context is plain JSON, written out field
 * by field; undefined for any other record. `JSON.stringify` of the record took about 3 µs a write
 * in a fan-out of 1,000 × 3 × 50 ms, the largest single cost of a write: its walk of the two
 * spread copies, and of fields whose encoding is known in advance.
 */
function runtimeRecordJson(record: AgentRecord, context: StoredContext): string | undefined {
  const { snapshot } = record
  const { value } = snapshot
  if (
    fieldCount(record) !== recordFields ||
    fieldCount(snapshot) !== snapshotFields ||
    record.version !== 1 ||
    typeof record.runId !== 'string' ||
    typeof record.id !== 'string' ||
    typeof record.name !== 'string' ||
    (record.parentId !== null && typeof record.parentId !== 'string') ||
    !Number.isFinite(record.depth) ||
    typeof record.status !== 'string' ||
    !Number.isFinite(record.updatedAt) ||
    typeof snapshot.status !== 'string' ||
    snapshot.output !== undefined ||
    snapshot.error !== undefined ||
    !isEmptyObject(snapshot.historyValue) ||
    !isEmptyObject(snapshot.children) ||
    (typeof value !== 'string' && !isPlainJson(value)) ||
    !isPlainJson(context)
  )
    return undefined
  const parent = record.parentId === null ? 'null' : quote(record.parentId)
  const state = typeof value === 'string' ? quote(value) : JSON.stringify(value)
  return (
    `{"json":{"version":1,"runId":${quote(record.runId)},"id":${quote(record.id)},"name":${quote(record.name)},` +
    `"parentId":${parent},"depth":${record.depth},"status":${quote(record.status)},"updatedAt":${record.updatedAt},` +
    `"snapshot":{"status":${quote(snapshot.status)},"value":${state},"historyValue":{},` +
    `"context":${JSON.stringify(context)},"children":{}}}}`
  )
}

/** `toAgentRecord`'s fields, and its snapshot's (output and error are there, undefined). */
const recordFields = 9
const snapshotFields = 7

/** A string needs no escaping in JSON: no quote, backslash, control character or surrogate. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: the control characters JSON escapes
const plainString = /^[^"\\\u0000-\u001f\ud800-\udfff]*$/

/** `JSON.stringify` of a string, without its scan when nothing needs escaping. */
function quote(text: string): string {
  return plainString.test(text) ? `"${text}"` : JSON.stringify(text)
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

function encodeMessages(
  messages: readonly ChatMessage[],
  last: EncodedMessages | undefined,
): { head: string; rest: string } {
  let head = ''
  let rest = ''
  let from = 0
  if (
    last?.messages !== undefined &&
    last.head !== undefined &&
    last.rest !== undefined &&
    last.messages.length > 0 &&
    extendsHistory(messages, last.messages)
  ) {
    head = last.head
    rest = last.rest
    from = last.messages.length
  }
  for (let index = from; index < messages.length; index++) {
    const json = messageToJson(messages[index]!, index)
    if (index === 0) head = json
    else rest = rest === '' ? json : `${rest},${json}`
  }
  if (last) {
    last.messages = messages
    last.head = head
    last.rest = rest
  }
  return { head, rest }
}

function messageToJson(message: ChatMessage, index: number): string {
  if (
    index < rememberedFrom &&
    typeof message.content === 'string' &&
    message.content.length < rememberedLength
  )
    return JSON.stringify(message)
  let json = messageJson.get(message)
  if (json === undefined) {
    json = JSON.stringify(message)
    messageJson.set(message, json)
  }
  return json
}

/** True when `messages` begins with every message of `earlier`, the same objects in the same order. */
function extendsHistory(messages: readonly ChatMessage[], earlier: readonly ChatMessage[]): boolean {
  if (earlier.length > messages.length) return false
  for (let index = 0; index < earlier.length; index++) if (messages[index] !== earlier[index]) return false
  return true
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

/**
 * Format 3 leaves out of the context what the reader supplies (`storedContext`); format 2 wrote
 * the children beside the record too. Records of formats 1 and 2 are still read.
 */
const agentFormat = 'cohort-agent/3'
const agentFormatWithContext = 'cohort-agent/2'
const agentFormatWithoutChildren = 'cohort-agent/1'
const agentFormats = new Set([agentFormat, agentFormatWithContext, agentFormatWithoutChildren])
const messagesPrefix = `{"format":"${agentFormat}","messages":[`

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
  if (typeof parsed?.format !== 'string' || !agentFormats.has(parsed.format))
    return superjson.deserialize(parsed as Parameters<typeof superjson.deserialize>[0])
  const record = superjson.deserialize(parsed.record as Parameters<typeof superjson.deserialize>[0]) as {
    snapshot?: { context?: Record<string, unknown> }
  }
  const context = record?.snapshot?.context
  if (context && typeof context === 'object') {
    context.messages = parsed.messages
    if (parsed.format !== agentFormatWithoutChildren) context.children = parsed.children
    if (parsed.format === agentFormat) restoreContext(context, record as Record<string, unknown>)
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
