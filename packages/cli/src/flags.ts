/** Command-line values read and checked: a bad one is an `InvalidInputError` naming its flag (exit code 2). */
import { InvalidInputError, maxTimeoutMs, type RunStatus } from '@cohort/core'

const durationUnits: Record<string, number> = {
  ms: 1,
  s: 1_000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 604_800_000,
}

export function durationMs(text: string, flag: string): number {
  const match = /^(\d+)(ms|s|m|h|d|w)$/.exec(text.trim())
  const ms = match ? Number(match[1]) * durationUnits[match[2]!]! : Number.NaN
  if (!Number.isSafeInteger(ms)) {
    throw new InvalidInputError(
      `${flag} must be a whole number and a unit (ms, s, m, h, d or w), such as 7d or 12h, got "${text}"`,
    )
  }
  return ms
}

/** `--timeout`: a duration above 0 that a timer can wait (about 24.8 days at most). */
export function timeoutFlag(text: string): number {
  const ms = durationMs(text, '--timeout')
  if (ms <= 0 || ms > maxTimeoutMs)
    throw new InvalidInputError(
      `--timeout must be above 0 and at most ${maxTimeoutMs} ms (about 24.8 days), got "${text}"`,
    )
  return ms
}

const runStatuses: RunStatus[] = ['running', 'completed', 'failed', 'cancelled']

export function statuses(text: string): RunStatus[] {
  const list = text.split(',').map((s) => s.trim())
  for (const status of list) {
    if (!runStatuses.includes(status as RunStatus)) {
      throw new InvalidInputError(`--status "${status}" is not one of ${runStatuses.join(', ')}`)
    }
  }
  return list as RunStatus[]
}

/** `--port`: 0 (any free port) to 65535. */
export function portNumber(text: string): number {
  const port = positiveInt(text, '--port', true)
  if (port > 65_535) throw new InvalidInputError(`--port must be 0 to 65535, got "${text}"`)
  return port
}

export function positiveInt(text: string, flag: string, allowZero = false): number {
  const value = Number(text)
  if (!/^\d+$/.test(text) || (!allowZero && value === 0) || value > 1_000_000) {
    throw new InvalidInputError(
      `${flag} must be a ${allowZero ? 'non-negative' : 'positive'} integer, got "${text}"`,
    )
  }
  return value
}
