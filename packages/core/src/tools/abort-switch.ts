import { getEventListeners } from 'node:events'
import { abortableSleep } from './define-tool.js'

/**
 * Aborts an agent's effect (a model call, a tool, a wait for children), and makes its
 * AbortSignal only when something reads it. Node 20 takes about 4.5 µs to make a signal and 4 µs
 * more for its first listener: most of what starting an agent cost, and a fan-out starts
 * thousands at once. Cohort's own waits (a scripted model's latency, a tool's sleep, a wait for
 * children) listen here, and need no signal.
 */
export class AbortSwitch {
  aborted = false
  reason: unknown
  private controller: AbortController | undefined
  /**
   * Who is told on abort: one listener as itself (an effect has one waiter: a model call's
   * latency, a sleep, a wait for children), more in a Set. A Set for every switch was about
   * 200 bytes of each agent in flight.
   */
  private listeners: (() => void) | Set<() => void> | undefined

  get signal(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController()
      if (this.aborted) this.controller.abort(this.reason)
    }
    return this.controller.signal
  }

  /** Calls `listener` once, on abort. The caller checks `aborted` first. */
  onAbort(listener: () => void): void {
    const listeners = this.listeners
    if (listeners === undefined) this.listeners = listener
    else if (typeof listeners === 'function') this.listeners = new Set([listeners, listener])
    else listeners.add(listener)
  }

  offAbort(listener: () => void): void {
    const listeners = this.listeners
    if (listeners === listener) this.listeners = undefined
    else if (typeof listeners === 'object') listeners.delete(listener)
  }

  abort(reason: unknown): void {
    if (this.aborted) return
    this.aborted = true
    this.reason = reason
    const listeners = this.listeners
    this.listeners = undefined
    if (typeof listeners === 'function') listeners()
    else if (listeners) for (const listener of listeners) listener()
    this.controller?.abort(reason)
  }

  /** Waits `ms`, or rejects with the reason when aborted first. */
  sleep(ms: number): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.aborted) return reject(this.reason)
      const wake = () => {
        clearTimeout(timer)
        reject(this.reason)
      }
      const timer = setTimeout(() => {
        this.offAbort(wake)
        resolve()
      }, ms)
      this.onAbort(wake)
    })
  }

  /**
   * Free to serve the agent's next effect: not aborted, and nobody waits on it any more (a
   * listener left on its signal, as an SDK that never removes its own leaves one, or a sleep
   * still running). Making a new one costs more than much of a fast step.
   */
  get idle(): boolean {
    const listeners = this.listeners
    if (this.aborted || typeof listeners === 'function' || (listeners !== undefined && listeners.size > 0))
      return false
    return this.controller === undefined || getEventListeners(this.controller.signal, 'abort').length === 0
  }
}

/** Where a model request or a tool's context carries the switch of its effect (for `sleepOn`). */
export const requestSwitch = Symbol('cohort.abortSwitch')

/**
 * `signal` as an own, enumerable getter (a spread of the object still copies a signal), one
 * descriptor for every object: V8 then reuses one shape for them all. A getter written in an
 * object literal is a new function each time, and made the literal cost 0.55 µs instead of 0.03
 * (a model request and a tool's context in every step); this costs about 0.1.
 */
const signalProperty: PropertyDescriptor = {
  get(this: { [requestSwitch]: AbortSwitch }) {
    return this[requestSwitch].signal
  },
  enumerable: true,
  configurable: true,
}

type Switched<T> = T & { readonly signal: AbortSignal; [requestSwitch]: AbortSwitch }

/** Gives `target` its effect's switch and a `signal` read from it (made on first read). */
export function withSwitch<T extends object>(target: T, abort: AbortSwitch): Switched<T> {
  const carrier = target as Switched<T>
  carrier[requestSwitch] = abort
  Object.defineProperty(carrier, 'signal', signalProperty)
  return carrier
}

/**
 * Waits `ms` for a model request: on its effect's switch when it has one (no signal is made),
 * on its signal otherwise (a request made outside the runtime).
 */
export function sleepOn(request: { signal: AbortSignal }, ms: number): Promise<void> {
  const abort = (request as { [requestSwitch]?: AbortSwitch })[requestSwitch]
  return abort ? abort.sleep(ms) : abortableSleep(ms, request.signal)
}
