import { getEventListeners } from 'node:events'
import { describe, expect, test } from 'vitest'
import { AbortSwitch, requestSwitch, sleepOn, withSwitch } from './abort-switch.js'

describe('AbortSwitch', () => {
  test('its signal, read after the abort, is aborted with the same reason', () => {
    const abort = new AbortSwitch()
    const reason = new Error('stop')
    abort.abort(reason)
    expect(abort.signal.aborted).toBe(true)
    expect(abort.signal.reason).toBe(reason)
  })

  test('an abort reaches a sleep, a listener and the signal made before it', async () => {
    const abort = new AbortSwitch()
    const { signal } = abort
    const heard: string[] = []
    abort.onAbort(() => heard.push('listener'))
    signal.addEventListener('abort', () => heard.push('signal'))
    const sleeping = abort.sleep(60_000)
    abort.abort(new Error('cancelled'))
    await expect(sleeping).rejects.toThrow('cancelled')
    expect(heard).toEqual(['listener', 'signal'])
    await expect(abort.sleep(0)).rejects.toThrow('cancelled')
  })

  test('an abort reaches every listener still on it, one or several, and none taken off', () => {
    const abort = new AbortSwitch()
    const heard: string[] = []
    const listen = (name: string) => () => heard.push(name)
    const first = listen('first')
    abort.onAbort(first)
    abort.offAbort(first)
    expect(abort.idle).toBe(true)
    const second = listen('second')
    abort.onAbort(first)
    abort.onAbort(second)
    abort.onAbort(listen('third'))
    abort.offAbort(second)
    expect(abort.idle).toBe(false)
    abort.abort(new Error('stop'))
    expect(heard).toEqual(['first', 'third'])
  })

  test('is idle again once its sleeps end, and not while something still waits on it', async () => {
    const abort = new AbortSwitch()
    for (let index = 0; index < 20; index++) await abort.sleep(0)
    expect(abort.idle).toBe(true)
    const pending = abort.sleep(5)
    expect(abort.idle).toBe(false)
    await pending
    expect(abort.idle).toBe(true)
    // As an SDK that never removes its listener leaves it.
    abort.signal.addEventListener('abort', () => {})
    expect(abort.idle).toBe(false)
  })

  test('a sleep for a request made outside the runtime listens on its signal, and leaves nothing behind', async () => {
    const controller = new AbortController()
    await sleepOn({ signal: controller.signal }, 0)
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0)
    const sleeping = sleepOn({ signal: controller.signal }, 60_000)
    controller.abort(new Error('gone'))
    await expect(sleeping).rejects.toThrow('gone')
    // A request from the runtime sleeps on its switch: no signal is made for it.
    const abort = new AbortSwitch()
    const request = {
      get signal(): AbortSignal {
        throw new Error('the signal was read')
      },
      [requestSwitch]: abort,
    }
    await sleepOn(request, 0)
  })

  test('an object given a switch has its signal as an own field, which a spread copies, aborted with the switch', async () => {
    const abort = new AbortSwitch()
    const request = withSwitch({ turn: 1 }, abort)
    expect(Object.keys(request)).toEqual(['turn', 'signal'])
    await sleepOn(request, 0)
    expect(abort.idle).toBe(true)
    const copy = { ...request }
    expect(copy.signal).toBe(abort.signal)
    abort.abort(new Error('stopped'))
    expect(copy.signal.aborted).toBe(true)
    expect(request.signal.reason).toEqual(new Error('stopped'))
    expect(withSwitch({ turn: 2 }, new AbortSwitch()).signal.aborted).toBe(false)
  })
})
