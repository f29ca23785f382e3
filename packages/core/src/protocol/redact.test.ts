import { expect, test } from 'vitest'
import { createRedactor } from './redact.js'

const secret = 'sk-test-SECRET-42'
const redact = createRedactor([secret])

test('a secret is replaced in strings, keys, arrays, Maps, Sets and errors, beside BigInts and Dates', () => {
  const when = new Date(0)
  class Token {
    constructor(readonly value: string) {}
  }
  const error = new Error(`auth failed for ${secret}`)
  const value = {
    id: 12n,
    when,
    list: [`Bearer ${secret}`, 1],
    map: new Map<unknown, unknown>([
      ['token', secret],
      [secret, 'as a key'],
    ]),
    set: new Set([secret]),
    token: new Token(secret),
    error,
  }
  const out = redact(value)
  expect(out.id).toBe(12n)
  expect(out.when).toBe(when)
  expect(out.list).toEqual(['Bearer [redacted]', 1])
  expect([...out.map]).toEqual([
    ['token', '[redacted]'],
    ['[redacted]', 'as a key'],
  ])
  expect([...out.set]).toEqual(['[redacted]'])
  expect(out.token).toBeInstanceOf(Token)
  expect(out.token.value).toBe('[redacted]')
  expect(out.error).toBeInstanceOf(Error)
  expect(out.error.message).toBe('auth failed for [redacted]')
  expect(out.error.stack).not.toContain(secret)
  // The caller's value is left as it was.
  expect(value.map.get('token')).toBe(secret)
  expect(error.message).toContain(secret)
})

test('a value without a secret is returned as it is, and a cycle is copied as a cycle', () => {
  const plain = { a: [1, 'two'], b: new Map([['k', 'v']]) }
  expect(redact(plain)).toBe(plain)
  const cyclic: Record<string, unknown> = { token: secret }
  cyclic.self = cyclic
  const out = redact(cyclic)
  expect(out.token).toBe('[redacted]')
  expect(out.self).toBe(out)
})

test('a secret split over fragments never shows: an end that may begin a secret waits for the next fragment', () => {
  const fragments = redact.fragments()
  const shown = ['my key is sk-te', 'st-SECR', 'ET-42, and s', 'o on', ' sk-'].map((text) =>
    fragments.push(text),
  )
  expect(shown).toEqual(['my key is ', '', '[redacted], and ', 'so on', ' '])
  // What never became a secret is given back at the end: the fragments join to the reply's text.
  expect(fragments.end()).toBe('sk-')
  expect(createRedactor([]).fragments().push('sk-test-SECRET-42')).toBe('sk-test-SECRET-42')
})
