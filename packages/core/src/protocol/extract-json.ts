/**
 * Finds the JSON a model meant in its text: the whole reply, a fenced block, or the first
 * balanced object or array in prose. Trailing commas are forgiven. Never throws.
 */
export function extractJson(text: string): { found: true; value: unknown } | { found: false } {
  for (const value of jsonValues(text)) return { found: true, value }
  return { found: false }
}

/**
 * Every top-level JSON value a model wrote, in order, found as `extractJson` finds one:
 * the whole reply; else the values in its fenced blocks (several in one fence, or one per
 * fence); else those in its prose. Models write several objects one after another as often
 * as an array. Never throws; `[]` when there is none.
 */
export function extractJsonValues(text: string): unknown[] {
  return [...jsonValues(text)]
}

/**
 * The whole of `text` as one JSON value, forgiving only its form: a fence around it, a trailing
 * comma. For a native tool call's arguments, which are one value: nothing is picked out of prose,
 * nor out of an object that does not parse.
 */
export function parseWhole(text: string): { found: true; value: unknown } | { found: false } {
  const trimmed = text.trim()
  const fenced = /^```[a-zA-Z]*[ \t]*\r?\n?([\s\S]*?)```$/.exec(trimmed)
  return tryParse((fenced ? fenced[1]! : trimmed).trim())
}

/**
 * Why a reply in which `extractJsonValues` found nothing holds no JSON: its first object or array
 * (in its first fence, if it has one) and what is wrong with it, as `JSON.parse` says (single
 * quotes, a comment, Python's `True`), or that it is never closed (a reply cut off). Undefined
 * when it has no `{` or `[` at all. So the model is told what to correct, not that it wrote none.
 */
export function unparsedJson(text: string): { json: string; problem: string } | undefined {
  const fence = /```[a-zA-Z]*[ \t]*\r?\n?([\s\S]*?)```/.exec(text)
  const scope = fence ? fence[1]! : text
  const start = nextOpening(scope, 0)
  if (start < 0) return undefined
  const closes = new Map<number, number>()
  learnCloses(scope, start, closes)
  const end = closes.get(start) ?? -1
  if (end < 0) return { json: scope.slice(start).trim(), problem: 'is never closed (was the reply cut off?)' }
  const json = scope.slice(start, end + 1)
  try {
    JSON.parse(withoutTrailingCommas(json))
    return undefined
  } catch (error) {
    return { json, problem: `is not JSON (${(error as Error).message})` }
  }
}

/** Lazily, so `extractJson` stops at the first value. */
function* jsonValues(text: string): Generator<unknown> {
  const whole = tryParse(text.trim())
  if (whole.found) {
    yield whole.value
    return
  }
  let fenced = false
  for (const match of text.matchAll(/```[a-zA-Z]*[ \t]*\r?\n?([\s\S]*?)```/g)) {
    for (const value of valuesIn(match[1] ?? '')) {
      fenced = true
      yield value
    }
  }
  // Prose around fences may hold braces of its own: the fences, when they hold JSON, are what was meant.
  if (!fenced) yield* valuesIn(text)
}

/**
 * The balanced objects and arrays of `text` that parse, in order; one that does not, or that is
 * never closed (a `{` in prose), is looked into and passed.
 */
function* valuesIn(text: string): Generator<unknown> {
  const closes = new Map<number, number>()
  let from = 0
  while (from < text.length) {
    const start = nextOpening(text, from)
    if (start < 0) return
    if (!closes.has(start)) learnCloses(text, start, closes)
    const end = closes.get(start) ?? -1
    const candidate = end < 0 ? undefined : tryParse(text.slice(start, end + 1))
    if (candidate?.found) {
      yield candidate.value
      from = end + 1
    } else {
      from = start + 1
    }
  }
}

function tryParse(candidate: string): { found: true; value: unknown } | { found: false } {
  if (candidate === '' || (candidate[0] !== '{' && candidate[0] !== '[')) return { found: false }
  try {
    return { found: true, value: JSON.parse(candidate) }
  } catch {
    try {
      return { found: true, value: JSON.parse(withoutTrailingCommas(candidate)) }
    } catch {
      return { found: false }
    }
  }
}

function nextOpening(text: string, from: number): number {
  for (let i = from; i < text.length; i++) {
    const c = text[i]
    if (c === '{' || c === '[') return i
  }
  return -1
}

/**
 * Scans from the bracket at `start` (skipping string contents) to the one closing it, or to the
 * end, and records in `closes` where each bracket it passed closes (-1: never). A bracket outside
 * a string in this scan closes where a scan of its own would find: an unclosed `{` in prose costs
 * one scan of the rest, not one per bracket after it.
 */
function learnCloses(text: string, start: number, closes: Map<number, number>): void {
  const open: number[] = []
  let inString = false
  for (let i = start; i < text.length; i++) {
    const c = text[i]
    if (inString) {
      if (c === '\\') i++
      else if (c === '"') inString = false
      continue
    }
    if (c === '"') inString = true
    else if (c === '{' || c === '[') open.push(i)
    else if (c === '}' || c === ']') {
      closes.set(open.pop() as number, i)
      if (open.length === 0) return
    }
  }
  for (const position of open) closes.set(position, -1)
}

function withoutTrailingCommas(json: string): string {
  let out = ''
  let inString = false
  for (let i = 0; i < json.length; i++) {
    const c = json[i]
    if (inString) {
      out += c
      if (c === '\\') out += json[++i] ?? ''
      else if (c === '"') inString = false
      continue
    }
    if (c === '"') inString = true
    if (c === ',') {
      let j = i + 1
      while (j < json.length && /\s/.test(json[j] ?? '')) j++
      if (json[j] === '}' || json[j] === ']') continue
    }
    out += c
  }
  return out
}

/**
 * Nesting depth of a parsed JSON value, computed without recursion (replies can be hostile).
 * Two stacks of values and depths, and a `for…in` over objects: a tuple and an `Object.values`
 * array per value made this walk about 5% of what a step allocated.
 */
export function jsonDepth(value: unknown, limit: number): number {
  if (value === null || typeof value !== 'object') return 0
  let max = 0
  const items: object[] = [value]
  const depths: number[] = [1]
  while (items.length > 0) {
    const item = items.pop() as Record<string, unknown>
    const depth = depths.pop() as number
    if (depth > max) max = depth
    if (max > limit) return max
    if (Array.isArray(item)) {
      for (let index = 0; index < item.length; index++) {
        const child: unknown = item[index]
        if (child !== null && typeof child === 'object') {
          items.push(child)
          depths.push(depth + 1)
        }
      }
    } else if (item instanceof Map || item instanceof Set) {
      // A value from code, not from JSON (an answer given to an agent): the encoder goes into these too.
      for (const child of item instanceof Map ? [...item.keys(), ...item.values()] : item) {
        if (child !== null && typeof child === 'object') {
          items.push(child)
          depths.push(depth + 1)
        }
      }
    } else {
      for (const key in item) {
        const child = item[key]
        if (child !== null && typeof child === 'object') {
          items.push(child)
          depths.push(depth + 1)
        }
      }
    }
  }
  return max
}
