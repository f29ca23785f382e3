/** A value with a `then` method: a promise, or anything `await` would wait for. */
export function isThenable<T = unknown>(value: unknown): value is PromiseLike<T> {
  return typeof (value as { then?: unknown } | null)?.then === 'function'
}

/** `fn`'s value as a promise: a rejected one when it throws, as an async function would give. */
export function promiseOf<T>(fn: () => T): Promise<T> {
  try {
    return Promise.resolve(fn())
  } catch (error) {
    return Promise.reject(error)
  }
}

/** Resolves on the next turn of the event loop, after the I/O and timers already due. */
export function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve))
}
