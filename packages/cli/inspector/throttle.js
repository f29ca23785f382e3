// @ts-check

/**
 * Runs `task` at most once every `gapMs`, never two at a time; a request made while one runs
 * queues exactly one more, so the last request is always followed by a fresh fetch.
 * @param {() => Promise<void>} task
 * @param {number} gapMs
 * @returns {(immediately?: boolean) => void}
 */
export function throttled(task, gapMs) {
  let last = 0
  /** @type {ReturnType<typeof setTimeout> | null} */
  let timer = null
  let running = false
  let again = false
  async function fire() {
    timer = null
    running = true
    last = Date.now()
    try {
      await task()
    } catch (error) {
      console.error(error)
    } finally {
      running = false
      if (again) {
        again = false
        schedule()
      }
    }
  }
  /** @param {boolean} [immediately] */
  function schedule(immediately) {
    if (running) {
      again = true
      return
    }
    if (timer !== null) {
      if (!immediately) return
      clearTimeout(timer)
    }
    timer = setTimeout(fire, immediately ? 0 : Math.max(0, last + gapMs - Date.now()))
  }
  return schedule
}
