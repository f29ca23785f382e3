import superjson from 'superjson'
import type { z } from 'zod'
import { InvalidInputError, SnapshotError } from '../errors.js'
import { jsonDepth } from '../protocol/extract-json.js'
import {
  type AgentRecord,
  agentRecordSchema,
  isValidAgentId,
  isValidRunId,
  type RunId,
  type RunRecord,
  runRecordSchema,
} from './records.js'

/**
 * The one stored format: a record is its own JSON (so `record->>'status'` answers in SQL and
 * `jq` reads a file), with superjson's annotations under `$superjson` only when a value needs
 * them (a Date, Map, Set, BigInt or Error in a result, an answer or a fallback). An agent's
 * messages and children are strings and links only: they are left out of superjson's walk,
 * which costs ten times `JSON.stringify` on a long history.
 */
export function encodeRecord(record: RunRecord | AgentRecord): string {
  const { json, annotations } = encodeRecordParts(record)
  return joinRecordParts(json, annotations)
}

/** A record's text from its two parts (`encodeRecordParts`, `encodeAgentRecordParts`). */
export function joinRecordParts(json: string, annotations: string | null): string {
  return annotations === null ? json : `${json.slice(0, -1)},"$superjson":${annotations}}`
}

/**
 * A record's stored text in its two parts: the record as JSON, and superjson's annotations for
 * the values JSON cannot hold (null when none needs them). A store that keeps them apart (a
 * jsonb column and a meta column) takes these; `encodeRecord` joins them.
 */
export function encodeRecordParts(record: RunRecord | AgentRecord | ChunkedAgentRecord): {
  json: string
  annotations: string | null
} {
  // Most records are plain JSON: a walk that only looks costs a fraction of superjson's, which
  // builds its annotations as it goes (it was most of a write).
  if (isPlainJson(record)) return { json: JSON.stringify(record), annotations: null }
  // superjson walks only the branches JSON cannot hold, and the plain ones are put back in its
  // JSON: a long history (an agent's messages) costs it nothing, and a key it refuses anywhere
  // (`constructor`, `prototype`, `__proto__`: a model's JSON may hold them) does not fail a write.
  const serialized = superjson.serialize(richBranches(record, new Map()))
  return partsOf({ ...serialized, json: withPlainBranches(serialized.json, record) as Serialized['json'] })
}

/** A plain object or array: what `richBranches` goes into (anything else goes to superjson whole). */
function isContainer(value: unknown): value is Record<string, unknown> {
  if (value === null || typeof value !== 'object') return false
  if (Array.isArray(value)) return true
  const prototype = Object.getPrototypeOf(value)
  return prototype === Object.prototype || prototype === null
}

/** A branch kept out of superjson's walk: plain JSON, and not undefined (which superjson keeps). */
function isPlainBranch(value: unknown): boolean {
  return value !== undefined && isPlain(value, 0)
}

/**
 * `value` with only its branches JSON cannot hold; an array keeps its length (null for a plain
 * item), so that superjson's paths are those of the whole. An object met again (shared, or a
 * cycle) is the same copy, for superjson to note as such.
 */
function richBranches(value: unknown, seen: Map<object, unknown>): unknown {
  if (!isContainer(value)) return value
  const known = seen.get(value)
  if (known !== undefined) return known
  const copy: Record<string, unknown> | unknown[] = Array.isArray(value) ? [] : {}
  seen.set(value, copy)
  if (Array.isArray(value)) {
    for (const item of value) (copy as unknown[]).push(isPlainBranch(item) ? null : richBranches(item, seen))
    return copy
  }
  for (const key of Object.keys(value)) {
    const field = value[key]
    if (!isPlainBranch(field)) setOwn(copy, key, richBranches(field, seen))
  }
  return copy
}

/** superjson's JSON of `richBranches(value)`, with `value`'s plain branches put back in their places. */
function withPlainBranches(json: unknown, value: unknown): unknown {
  if (!isContainer(value) || json === null || typeof json !== 'object') return json
  const into = json as Record<string, unknown>
  for (const key of Object.keys(value)) {
    const field = value[key]
    if (isPlainBranch(field)) setOwn(into, key, field)
    else if (Object.hasOwn(into, key)) withPlainBranches(into[key], field)
  }
  return json
}

/** Sets an own property, even one named `__proto__` (a plain assignment would set the prototype). */
function setOwn(target: object, key: string, value: unknown): void {
  Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true })
}

/**
 * An agent record whose history starts in chunks beside it: version 2, so that a reader from
 * before chunks refuses it (its schema asks for version 1) instead of reading the last messages
 * as the whole history. The decoder gives back a version 1 record, its history whole.
 */
type ChunkedAgentRecord = Omit<AgentRecord, 'version'> & { version: 2 }

/**
 * Messages per chunk of an agent's history a store keeps beside its record
 * (`encodeAgentRecordParts`): a record carries its last messages, fewer than this many.
 */
export const historyChunkSize = 16

/**
 * An agent record as a store that keeps an agent's history beside its record writes it: the
 * record with its last messages only (fewer than `historyChunkSize`), saying how many it has in
 * all (`historyLength`), and the chunks of the earlier ones, `historyChunkSize` messages each,
 * that the store does not hold yet (`from`: how many messages an earlier save of this agent
 * stored). A chunk is written once, when the history passes its end, so a write costs the same
 * at an agent's 300th turn as at its first; a short-lived agent's record is whole and no chunk
 * is written. `decodeAgentRecord(json, source, chunks)` puts them back together.
 */
export function encodeAgentRecordParts(
  record: AgentRecord,
  from = 0,
): { json: string; annotations: string | null; chunks: { index: number; json: string }[] } {
  const { messages } = record.snapshot.context
  const sealed = messages.length - (messages.length % historyChunkSize)
  const own: AgentRecord | ChunkedAgentRecord =
    sealed === 0
      ? record
      : {
          ...record,
          version: 2,
          snapshot: {
            ...record.snapshot,
            context: { ...record.snapshot.context, messages: messages.slice(sealed) },
          },
        }
  const { json, annotations } = encodeRecordParts(own)
  const chunks: { index: number; json: string }[] = []
  for (let index = Math.floor(from / historyChunkSize); index * historyChunkSize < sealed; index++) {
    const start = index * historyChunkSize
    chunks.push({ index, json: JSON.stringify(messages.slice(start, start + historyChunkSize)) })
  }
  return { json: `${json.slice(0, -1)},"historyLength":${messages.length}}`, annotations, chunks }
}

type Serialized = ReturnType<typeof superjson.serialize>

/** How deep a value from outside (an answer to an agent) may nest: deeper ones overflow the encoder's stack. */
export const maxStoredDepth = 500

/**
 * Refuses a value from outside that no record could hold (nested past `maxStoredDepth`, or a
 * cycle), before it reaches an agent: written later, it would fail the run instead.
 */
export function assertStorable(value: unknown, what: string): void {
  if (jsonDepth(value, maxStoredDepth) > maxStoredDepth) {
    throw new InvalidInputError(
      `${what} is nested deeper than ${maxStoredDepth} levels, or refers to itself: a run cannot store it`,
    )
  }
  // superjson would drop a function or a symbol, and read a class instance back as a plain
  // object: the agent would get another value after a resume than it got live.
  const lost = unstorable(value, '')
  if (lost !== undefined)
    throw new InvalidInputError(
      `${what} holds ${lost}: a run cannot store it; expected JSON values, Date, Map, Set, BigInt, RegExp, Error or undefined`,
    )
}

/** Objects superjson writes and reads back as they were (besides plain objects and arrays). */
const storableClasses = [Date, Map, Set, RegExp, Error, URL]

/** What in `value` (cycle-free) superjson would not read back as it was, and where; undefined when nothing. */
function unstorable(value: unknown, at: string): string | undefined {
  const where = at === '' ? '(root)' : at
  if (typeof value === 'function') return `a function at ${where}`
  if (typeof value === 'symbol') return `a symbol at ${where}`
  if (value === null || typeof value !== 'object') return undefined
  if (Array.isArray(value)) {
    for (let index = 0; index < value.length; index++) {
      const found = unstorable(value[index], `${at}[${index}]`)
      if (found !== undefined) return found
    }
    return undefined
  }
  if (value instanceof Map) {
    for (const [key, item] of value) {
      const found = unstorable(key, 'a key of the map') ?? unstorable(item, 'a value of the map')
      if (found !== undefined) return found
    }
    return undefined
  }
  if (value instanceof Set) {
    for (const item of value) {
      const found = unstorable(item, 'an item of the set')
      if (found !== undefined) return found
    }
    return undefined
  }
  if (storableClasses.some((kind) => value instanceof kind)) return undefined
  const prototype = Object.getPrototypeOf(value)
  if (prototype !== Object.prototype && prototype !== null)
    return `an instance of class ${prototype?.constructor?.name || '(anonymous)'} at ${where}`
  if (Object.getOwnPropertySymbols(value).length > 0) return `a symbol key at ${where}`
  for (const [key, item] of Object.entries(value)) {
    // superjson refuses these keys on its walk, which takes only what JSON cannot hold (`richBranches`).
    if (refusedKeys.has(key) && !isPlainBranch(item))
      return `a key "${key}" holding a value JSON cannot at ${where}`
    const found = unstorable(item, `${at}.${key}`)
    if (found !== undefined) return found
  }
  return undefined
}

const refusedKeys = new Set(['constructor', 'prototype', '__proto__'])

/** True when `JSON.stringify` keeps `value` exactly: no Date, Map, Set, BigInt, NaN, cycle or undefined in an array. */
function isPlainJson(value: unknown): boolean {
  return isPlain(value, 0)
}

/** Deeper than any record is: superjson decides (and reports a cycle its own way). */
const maxPlainDepth = 100

function isPlain(value: unknown, depth: number): boolean {
  if (value === null || typeof value === 'string' || typeof value === 'boolean') return true
  if (typeof value === 'number') return Number.isFinite(value)
  if (typeof value !== 'object' || depth > maxPlainDepth) return false
  if (Array.isArray(value)) {
    for (const item of value) if (item === undefined || !isPlain(item, depth + 1)) return false
    return true
  }
  const prototype = Object.getPrototypeOf(value)
  if (prototype !== Object.prototype && prototype !== null) return false
  for (const key in value) {
    const field = (value as Record<string, unknown>)[key]
    // JSON.stringify and superjson both drop an undefined field.
    if (field !== undefined && !isPlain(field, depth + 1)) return false
  }
  return true
}

function partsOf({ json, meta }: Serialized): { json: string; annotations: string | null } {
  return { json: JSON.stringify(json), annotations: meta === undefined ? null : JSON.stringify(meta) }
}

export function decodeRunRecord(text: string, source: string): RunRecord {
  return decode(text, source, runRecordSchema) as RunRecord
}

/**
 * An agent record from its stored text: a whole record (`encodeRecord`), or one written apart
 * from the start of its history (`encodeAgentRecordParts`), whose chunks are `chunks`, in
 * order from the first (a store may hold more: those of a write that did not finish, or of an
 * older history written over).
 */
export function decodeAgentRecord(text: string, source: string, chunks?: readonly string[]): AgentRecord {
  return decode(text, source, agentRecordSchema, chunks) as AgentRecord
}

function decode(text: string, source: string, schema: z.ZodType, chunks?: readonly string[]): unknown {
  let value: unknown
  try {
    value = parseRecord(text)
  } catch (error) {
    throw new SnapshotError(source, `not a readable record (${(error as Error).message}); expected JSON`)
  }
  if (value === undefined || value === null || typeof value !== 'object' || Array.isArray(value)) {
    const found =
      value === undefined || value === null
        ? 'empty'
        : Array.isArray(value)
          ? 'an array'
          : `a ${typeof value}`
    throw new SnapshotError(source, `the record is ${found}; expected an object`)
  }
  if ('historyLength' in value) withHistory(value, chunks ?? [], source)
  const checked = schema.safeParse(value)
  if (!checked.success) {
    const issue = checked.error.issues[0]!
    throw new SnapshotError(source, issue.message, issue.path.join('.') || '(root)')
  }
  return checked.data
}

/**
 * How many chunks of its history a stored record needs at most (0 for a whole record), read
 * from its text, for a store that fetches chunks by index.
 */
export function chunksNeeded(text: string): number {
  try {
    const { historyLength } = JSON.parse(text) as { historyLength?: unknown }
    return typeof historyLength === 'number' && Number.isInteger(historyLength) && historyLength > 0
      ? Math.floor(historyLength / historyChunkSize)
      : 0
  } catch {
    return 0
  }
}

/** Puts the start of an agent's history, stored beside its record in chunks, back in its context. */
function withHistory(value: { historyLength?: unknown }, chunks: readonly string[], source: string): void {
  const length = value.historyLength
  delete value.historyLength
  const context = (value as { snapshot?: { context?: { messages?: unknown } } }).snapshot?.context
  // A record without its own messages is left for the schema to refuse.
  if (!Array.isArray(context?.messages)) return
  const own = context.messages
  if (typeof length !== 'number' || !Number.isInteger(length) || length < own.length)
    throw new SnapshotError(
      source,
      `${JSON.stringify(length)}; expected the count of its messages, at least the ${own.length} it holds`,
      'historyLength',
    )
  const messages: unknown[] = []
  for (let index = 0; messages.length < length - own.length; index++) {
    const text = chunks[index]
    if (text === undefined)
      throw new SnapshotError(
        source,
        `the record has ${length} messages, ${own.length} of them its own, and its history holds ${messages.length} more; expected all of them`,
        'historyLength',
      )
    let chunk: unknown
    try {
      chunk = JSON.parse(text)
    } catch (error) {
      throw new SnapshotError(source, `chunk ${index} is not JSON (${(error as Error).message})`, 'history')
    }
    if (!Array.isArray(chunk))
      throw new SnapshotError(source, `chunk ${index} is not a list of messages`, 'history')
    for (const message of chunk) messages.push(message)
  }
  if (messages.length !== length - own.length)
    throw new SnapshotError(
      source,
      `its history holds ${messages.length} messages before the record's own; expected ${length - own.length}`,
      'history',
    )
  for (const message of own) messages.push(message)
  context.messages = messages
  // A record with chunks is version 2 as stored (see `ChunkedAgentRecord`), version 1 whole.
  const record = value as { version?: unknown }
  if (record.version === 2 && messages.length > own.length) record.version = 1
}

function parseRecord(text: string): unknown {
  const parsed = JSON.parse(text) as unknown
  if (parsed === null || typeof parsed !== 'object' || !('$superjson' in parsed)) return parsed
  const { $superjson: meta, ...json } = parsed as { $superjson: Serialized['meta'] }
  // In place: its copy of the JSON dropped an own `__proto__` key (a model's tool arguments may
  // hold one), which the plain path keeps; a resumed run would see other arguments than the live one.
  return superjson.deserialize(
    { json: json as Serialized['json'], ...(meta !== undefined && { meta }) },
    { inPlace: true },
  )
}

/** Refuses run ids that could escape a folder or a key space (`../x`, `a/b`, empty). */
export function assertRunId(runId: unknown): asserts runId is RunId {
  if (!isValidRunId(runId)) {
    throw new InvalidInputError(
      `invalid run id ${JSON.stringify(String(runId).slice(0, 80))}: expected 1-64 letters, digits, "_" or "-"`,
    )
  }
}

/**
 * Refuses an agent record a store is asked to save under `runId` that it could not read back
 * there: one whose id is no agent id (`../x` would name a file outside the run's folder), or one
 * of another run (the whole run would then fail to load).
 */
export function assertAgentRecordOf(runId: RunId, record: AgentRecord): void {
  assertRunId(runId)
  if (!isValidAgentId(record?.id)) {
    throw new InvalidInputError(
      `invalid agent id ${JSON.stringify(String(record?.id).slice(0, 80))} in run ${runId}: expected ids of letters, digits, "_" or "-" joined by dots`,
    )
  }
  if (record.runId !== runId) {
    throw new InvalidInputError(
      `agent "${record.id}" of run ${JSON.stringify(String(record.runId).slice(0, 80))} cannot be saved in run "${runId}": a record is saved in its own run`,
    )
  }
}
