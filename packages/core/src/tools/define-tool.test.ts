import { getEventListeners } from 'node:events'
import { describe, expect, test } from 'vitest'
import { abortableSleep, hasAbortListeners } from './define-tool.js'

describe('abortableSleep', () => {
  test('sleeps on one signal share one listener, and the signal can serve again once they end', async () => {
    const controller = new AbortController()
    const { signal } = controller
    expect(hasAbortListeners(signal)).toBe(false)
    for (let index = 0; index < 50; index++) await abortableSleep(0, signal)
    await Promise.all([abortableSleep(1, signal), abortableSleep(2, signal)])
    expect(getEventListeners(signal, 'abort')).toHaveLength(1)
    expect(hasAbortListeners(signal)).toBe(false)
    const pending = abortableSleep(60_000, signal)
    // A sleep still running keeps the signal from being handed to another effect.
    expect(hasAbortListeners(signal)).toBe(true)
    controller.abort(new Error('stop'))
    await expect(pending).rejects.toThrow('stop')
  })

  test('an abort wakes every sleep waiting on the signal, and one that already ended stays resolved', async () => {
    const controller = new AbortController()
    await abortableSleep(0, controller.signal)
    const started = performance.now()
    const sleeps = [abortableSleep(60_000, controller.signal), abortableSleep(60_000, controller.signal)]
    controller.abort(new Error('cancelled'))
    const outcomes = await Promise.allSettled(sleeps)
    expect(outcomes.map((outcome) => outcome.status)).toEqual(['rejected', 'rejected'])
    expect(performance.now() - started).toBeLessThan(1_000)
    await expect(abortableSleep(0, controller.signal)).rejects.toThrow('cancelled')
  })

  test('another listener on the signal (an SDK that never removes its own) counts', async () => {
    const { signal } = new AbortController()
    await abortableSleep(0, signal)
    signal.addEventListener('abort', () => {})
    expect(hasAbortListeners(signal)).toBe(true)
  })
})
