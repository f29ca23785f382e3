// @ts-check
// How times, durations and values read on the page.

/** @param {number} ms */
export function formatDuration(ms) {
  if (!Number.isFinite(ms) || ms < 0) return '–'
  // Each unit decided on the value as it will be shown, rounded: 999.6 ms reads "1.00 s", not "1000 ms".
  if (Math.round(ms) < 1000) return `${Math.round(ms)} ms`
  const hundredths = Math.round(ms / 10)
  if (hundredths < 1000) return `${(hundredths / 100).toFixed(2)} s`
  const tenths = Math.round(ms / 100)
  if (tenths < 600) return `${(tenths / 10).toFixed(1)} s`
  const seconds = Math.round(ms / 1000)
  const minutes = Math.floor(seconds / 60)
  if (minutes < 60) return `${minutes}m ${String(seconds % 60).padStart(2, '0')}s`
  return `${Math.floor(minutes / 60)}h ${String(minutes % 60).padStart(2, '0')}m`
}

/** @param {number} epochMs */
export function formatTime(epochMs) {
  if (!Number.isFinite(epochMs)) return '–'
  const date = new Date(epochMs)
  const time = date.toLocaleTimeString(undefined, { hour12: false })
  const today = new Date().toDateString() === date.toDateString()
  return today ? time : `${date.toLocaleDateString()} ${time}`
}

/** @param {unknown} value */
export function pretty(value) {
  if (value === undefined) return 'undefined'
  if (typeof value === 'string') return value
  try {
    return JSON.stringify(value, null, 2)
  } catch {
    return String(value)
  }
}

/**
 * Pretty-prints text that is JSON; leaves other text as it is.
 * @param {unknown} text
 */
export function prettyText(text) {
  if (typeof text !== 'string') return pretty(text)
  const trimmed = text.trim()
  if (!/^[[{]/.test(trimmed)) return text
  try {
    return JSON.stringify(JSON.parse(trimmed), null, 2)
  } catch {
    return text
  }
}

/**
 * The answer as typed, or the value it spells if it is JSON (`42`, `true`, `{"a":1}`).
 * @param {string} text
 * @returns {unknown}
 */
export function parseAnswer(text) {
  try {
    return JSON.parse(text)
  } catch {
    return text
  }
}

/**
 * Tick offsets (ms from the run's start) at a round step, at most about eight of them.
 * @param {number} span
 */
export function tickValues(span) {
  const steps = [
    10, 20, 50, 100, 200, 250, 500, 1000, 2000, 5000, 10_000, 15_000, 30_000, 60_000, 120_000, 300_000,
    600_000, 1_800_000, 3_600_000,
  ]
  const step = steps.find((s) => span / s <= 8) || Math.ceil(span / 8 / 3_600_000) * 3_600_000
  /** @type {number[]} */
  const out = []
  for (let t = 0; t <= span; t += step) out.push(t)
  return out
}

/**
 * @param {number} t
 * @param {number} step
 */
export function formatTick(t, step) {
  if (t === 0) return '0'
  if (step < 1000) return `${(t / 1000).toFixed(step < 100 ? 2 : 1)} s`
  if (step < 60_000) return `${Math.round(t / 1000)} s`
  return formatDuration(t)
}
