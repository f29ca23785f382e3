import superjson from 'superjson'
import type { z } from 'zod'
import { InvalidInputError, SnapshotError } from '../errors.js'
import {
  type AgentRecord,
  agentRecordSchema,
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
  return annotations === null ? json : `${json.slice(0, -1)},"$superjson":${annotations}}`
}

/**
 * A record's stored text in its two parts: the record as JSON, and superjson's annotations for
 * the values JSON cannot hold (null when none needs them). A store that keeps them apart (a
 * jsonb column and a meta column) takes these; `encodeRecord` joins them.
 */
export function encodeRecordParts(record: RunRecord | AgentRecord): {
  json: string
  annotations: string | null
} {
  // Most records are plain JSON: a walk that only looks costs a fraction of superjson's, which
  // builds its annotations as it goes (it was most of a write).
  if (isPlainJson(record)) return { json: JSON.stringify(record), annotations: null }
  if (!('snapshot' in record)) return partsOf(superjson.serialize(record))
  const { messages, children, ...context } = record.snapshot.context
  const serialized = superjson.serialize({ ...record, snapshot: { ...record.snapshot, context } })
  const json = serialized.json as { snapshot: { context: Record<string, unknown> } }
  json.snapshot.context.messages = messages
  json.snapshot.context.children = children
  return partsOf(serialized)
}

type Serialized = ReturnType<typeof superjson.serialize>

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

export function decodeAgentRecord(text: string, source: string): AgentRecord {
  return decode(text, source, agentRecordSchema) as AgentRecord
}

function decode(text: string, source: string, schema: z.ZodType): unknown {
  let value: unknown
  try {
    value = parseRecord(text)
  } catch (error) {
    throw new SnapshotError(source, `not a readable record (${(error as Error).message}); expected JSON`)
  }
  if (value === undefined || value === null || typeof value !== 'object')
    throw new SnapshotError(source, 'empty record; expected an object')
  const checked = schema.safeParse(value)
  if (!checked.success) {
    const issue = checked.error.issues[0]!
    throw new SnapshotError(source, issue.message, issue.path.join('.') || '(root)')
  }
  return checked.data
}

function parseRecord(text: string): unknown {
  const parsed = JSON.parse(text) as unknown
  if (parsed === null || typeof parsed !== 'object' || !('$superjson' in parsed)) return parsed
  const { $superjson: meta, ...json } = parsed as { $superjson: Serialized['meta'] }
  return superjson.deserialize({ json: json as Serialized['json'], ...(meta !== undefined && { meta }) })
}

/** Refuses run ids that could escape a folder or a key space (`../x`, `a/b`, empty). */
export function assertRunId(runId: unknown): asserts runId is RunId {
  if (!isValidRunId(runId)) {
    throw new InvalidInputError(
      `invalid run id ${JSON.stringify(String(runId).slice(0, 80))}: expected 1-64 letters, digits, "_" or "-"`,
    )
  }
}
