/**
 * Finds the JSON a model meant in its text: the whole reply, a fenced block, or the first
 * balanced object or array in prose. Trailing commas are forgiven. Never throws.
 */
export function extractJson(text: string): { found: true; value: unknown } | { found: false } {
  const whole = tryParse(text.trim())
  if (whole.found) return whole
  for (const match of text.matchAll(/```[a-zA-Z]*[ \t]*\r?\n?([\s\S]*?)```/g)) {
    const fenced = tryParse((match[1] ?? '').trim())
    if (fenced.found) return fenced
  }
  let from = 0
  while (from < text.length) {
    const start = nextOpening(text, from)
    if (start < 0) break
    const end = matchingClose(text, start)
    if (end < 0) break
    const candidate = tryParse(text.slice(start, end + 1))
    if (candidate.found) return candidate
    from = start + 1
  }
  return { found: false }
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

/** Index of the bracket closing the one at `start`, skipping string contents; -1 if unbalanced. */
function matchingClose(text: string, start: number): number {
  let depth = 0
  let inString = false
  for (let i = start; i < text.length; i++) {
    const c = text[i]
    if (inString) {
      if (c === '\\') i++
      else if (c === '"') inString = false
      continue
    }
    if (c === '"') inString = true
    else if (c === '{' || c === '[') depth++
    else if (c === '}' || c === ']') {
      depth--
      if (depth === 0) return i
    }
  }
  return -1
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

/** Nesting depth of a parsed JSON value, computed without recursion (replies can be hostile). */
export function jsonDepth(value: unknown, limit: number): number {
  let max = 0
  const stack: [unknown, number][] = [[value, 1]]
  while (stack.length > 0) {
    const [item, depth] = stack.pop()!
    if (item === null || typeof item !== 'object') continue
    if (depth > max) max = depth
    if (max > limit) return max
    for (const child of Object.values(item)) stack.push([child, depth + 1])
  }
  return max
}
