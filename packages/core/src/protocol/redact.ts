/** Replaces configured secrets in text and values that enter a run (model replies, tool results, input). */
export interface Redactor {
  <T>(value: T): T
  /**
   * For text that comes in fragments (a streamed reply): `push` gives back what is safe to show,
   * holding back an end that may be the start of a secret; `end` gives back what is held.
   */
  fragments(): { push(text: string): string; end(): string }
}

const minSecretLength = 6

/**
 * A key that is a plain word (lowercase letters and hyphens: `ollama`, `lm-studio`,
 * `sk-no-key-required`) is a placeholder a local server ignores, not a credential: hiding it would
 * turn every "ollama" in a task, reply or result into `[redacted]`.
 */
const placeholderKey = /^[a-z-]+$/

/**
 * Secrets are removed where data enters, so they reach no message, event, log or stored
 * record. `secrets` are the user's, hidden as given; `keys` are credentials a model holds
 * (`ChatModel.secrets`), hidden with `OPENAI_API_KEY` unless they are placeholders.
 */
export function createRedactor(secrets: readonly string[] = [], keys: readonly string[] = []): Redactor {
  const credentials = [...keys, process.env.OPENAI_API_KEY ?? ''].filter((key) => !placeholderKey.test(key))
  const list = [...secrets, ...credentials].filter((secret) => secret.length >= minSecretLength)
  if (list.length === 0) {
    return Object.assign(<T>(value: T): T => value, {
      fragments: () => ({ push: (text: string) => text, end: () => '' }),
    })
  }
  const holds = (text: string) => list.some((secret) => text.includes(secret))
  const redactText = (text: string) => {
    let out = text
    for (const secret of list) if (out.includes(secret)) out = out.replaceAll(secret, '[redacted]')
    return out
  }
  const redact = <T>(value: T): T => {
    if (typeof value === 'string') return redactText(value) as T
    if (value === null || typeof value !== 'object') return value
    // Only a value that holds a secret is copied; the copy keeps its Maps, Sets, Dates and classes.
    if (!holdsSecret(value, holds, new Set())) return value
    return redactedCopy(value, redactText, new Map()) as T
  }
  const fragments = () => {
    let held = ''
    return {
      push(text: string): string {
        const joined = redactText(held + text)
        const keep = secretStartAtEnd(joined, list)
        held = joined.slice(joined.length - keep)
        return joined.slice(0, joined.length - keep)
      },
      end(): string {
        const rest = held
        held = ''
        return rest
      },
    }
  }
  return Object.assign(redact, { fragments })
}

/** How many of `text`'s last characters are the beginning of one of the secrets (0 when none). */
function secretStartAtEnd(text: string, secrets: readonly string[]): number {
  let longest = 0
  for (const secret of secrets) {
    for (let length = Math.min(secret.length - 1, text.length); length > longest; length--) {
      if (text.endsWith(secret.slice(0, length))) longest = length
    }
  }
  return longest
}

/** The strings a value holds: its own, its keys, and those of Maps, Sets and errors. */
function* stringsOf(value: object): Generator<[key: unknown, item: unknown]> {
  if (value instanceof Map) yield* value.entries()
  else if (value instanceof Set) for (const item of value) yield [undefined, item]
  else {
    if (value instanceof Error) {
      yield ['message', value.message]
      yield ['stack', value.stack]
      // Not enumerable, and where an adapter keeps the library's error (its body may echo a key).
      yield ['cause', value.cause]
    }
    for (const key of Object.keys(value)) yield [key, (value as Record<string, unknown>)[key]]
  }
}

/** Values that hold no strings to redact, and that a copy of their fields would break. */
function opaque(value: object): boolean {
  return (
    ArrayBuffer.isView(value) ||
    value instanceof ArrayBuffer ||
    value instanceof Date ||
    value instanceof RegExp ||
    // A copy of its fields loses its internal state: inspecting it would throw. Response headers hold no key.
    value instanceof Headers
  )
}

function holdsSecret(value: unknown, holds: (text: string) => boolean, seen: Set<object>): boolean {
  if (typeof value === 'string') return holds(value)
  if (value === null || typeof value !== 'object' || seen.has(value) || opaque(value)) return false
  seen.add(value)
  for (const [key, item] of stringsOf(value)) {
    if (holdsSecret(key, holds, seen) || holdsSecret(item, holds, seen)) return true
  }
  return false
}

function redactedCopy(
  value: unknown,
  redactText: (text: string) => string,
  copies: Map<object, unknown>,
): unknown {
  if (typeof value === 'string') return redactText(value)
  if (value === null || typeof value !== 'object' || opaque(value)) return value
  const done = copies.get(value)
  if (done !== undefined) return done
  const copy = (item: unknown) => redactedCopy(item, redactText, copies)
  if (value instanceof Map) {
    const map = new Map()
    copies.set(value, map)
    for (const [key, item] of value) map.set(copy(key), copy(item))
    return map
  }
  if (value instanceof Set) {
    const set = new Set()
    copies.set(value, set)
    for (const item of value) set.add(copy(item))
    return set
  }
  // Arrays, plain objects, errors and class instances: the same prototype, own fields redacted.
  const target: Record<string, unknown> = Array.isArray(value)
    ? []
    : Object.create(Object.getPrototypeOf(value))
  copies.set(value, target)
  if (value instanceof Error) {
    for (const key of ['message', 'stack'] as const) {
      const text = value[key]
      if (typeof text === 'string')
        Object.defineProperty(target, key, { value: redactText(text), writable: true, configurable: true })
    }
    if (value.cause !== undefined)
      Object.defineProperty(target, 'cause', { value: copy(value.cause), writable: true, configurable: true })
  }
  for (const key of Object.keys(value))
    target[redactText(key)] = copy((value as Record<string, unknown>)[key])
  return target
}

/**
 * An error's message, stack and cause without secrets, in place: the error keeps its class and
 * code. The cause (a library's error, whose body may echo the key) is printed with the error by
 * `console.error` (`COHORT_DEBUG`). Returns the error to use from then on: one whose message holds
 * a secret and cannot be written (a `DOMException`, such as fetch's timeout, or a frozen error) is
 * replaced by a plain `Error` of its name and the redacted message, stack and cause.
 */
export function redactError<E>(redact: Redactor, error: E): E | Error {
  if (!(error instanceof Error)) return error
  const message = redact(error.message)
  const stack = typeof error.stack === 'string' ? redact(error.stack) : undefined
  const cause = error.cause === undefined ? undefined : redact(error.cause)
  if (rewrite(error, 'message', message)) {
    if (stack !== undefined) rewrite(error, 'stack', stack)
    if (cause !== undefined) rewrite(error, 'cause', cause)
    return error
  }
  const copy = new Error(message, cause === undefined ? undefined : { cause })
  copy.name = error.name
  if (stack !== undefined) copy.stack = stack
  return copy
}

/** Sets `error[key]` to `value` unless it is that already; false when it cannot be written. */
function rewrite(error: Error, key: 'message' | 'stack' | 'cause', value: unknown): boolean {
  if (error[key] === value) return true
  try {
    error[key] = value as never
  } catch {
    return false
  }
  return error[key] === value
}
