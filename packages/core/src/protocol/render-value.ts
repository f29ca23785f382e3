import superjson from 'superjson'

/**
 * A value as JSON a model can read, never throwing, short enough for a prompt. What JSON cannot
 * hold (BigInt, Map, Set, Error, RegExp, a cycle) is shown as superjson's JSON shows it: a BigInt
 * as its digits in a string, a Map as its `[key, value]` entries, a Set as its items, an Error as
 * `{ name, message }`. Dates are ISO strings either way.
 */
export function renderValue(value: unknown, maxChars = 20_000): string {
  const text = typeof value === 'string' ? value : toJson(value)
  return text.length > maxChars
    ? `${text.slice(0, maxChars)}… (${text.length - maxChars} more characters)`
    : text
}

function toJson(value: unknown): string {
  let text: string | undefined
  try {
    text = JSON.stringify(value) ?? 'null'
    // Maps, Sets and Errors come out of JSON.stringify as `{}`: only then is superjson's (slower) walk needed.
    if (!text.includes('{}')) return text
  } catch {
    // A BigInt or a cycle.
  }
  try {
    return JSON.stringify(superjson.serialize(value).json) ?? 'null'
  } catch (error) {
    return text ?? `(a value that cannot be shown as JSON: ${(error as Error).message})`
  }
}
