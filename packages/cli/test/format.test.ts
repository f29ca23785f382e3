import { expect, test } from 'vitest'

// The inspector's modules are the browser's plain JavaScript, type-checked with their own config.
const inspectorFormat: string = '../inspector/format.js'
const { formatDuration, formatTick } = (await import(inspectorFormat)) as {
  formatDuration: (ms: number) => string
  formatTick: (t: number, step: number) => string
}

test('a duration reads in the unit its rounded value belongs to', () => {
  expect(formatDuration(0)).toBe('0 ms')
  expect(formatDuration(999.4)).toBe('999 ms')
  expect(formatDuration(999.6)).toBe('1.00 s')
  expect(formatDuration(9_996)).toBe('10.0 s')
  expect(formatDuration(59_940)).toBe('59.9 s')
  expect(formatDuration(59_960)).toBe('1m 00s')
  expect(formatDuration(3_599_600)).toBe('1h 00m')
  expect(formatDuration(-1)).toBe('–')
})

test("the timeline's origin reads 0 whatever its step", () => {
  for (const step of [50, 500, 5_000, 60_000, 600_000]) expect(formatTick(0, step)).toBe('0')
  expect(formatTick(120_000, 60_000)).toBe('2m 00s')
})
