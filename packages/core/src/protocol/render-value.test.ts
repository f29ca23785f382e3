import { describe, expect, test } from 'vitest'
import { renderValue } from './render-value.js'

describe('renderValue', () => {
  test('a value that is not plain JSON is rendered as superjson renders it, never [object Object]', () => {
    expect(renderValue({ n: 10n, m: new Map([['a', 1]]) })).toBe('{"n":"10","m":[["a",1]]}')
    expect(renderValue(12345678901234567890n)).toBe('"12345678901234567890"')
    expect(renderValue([new Set([1, 2]), /x/g, new Error('no')])).toBe(
      '[[1,2],"/x/g",{"name":"Error","message":"no"}]',
    )
    const cyclic: Record<string, unknown> = { a: 1 }
    cyclic.self = cyclic
    expect(renderValue(cyclic)).toBe('{"a":1,"self":null}')
  })

  test('plain JSON, strings and undefined are rendered as JSON.stringify renders them', () => {
    expect(renderValue({ a: [1, { b: {} }], when: new Date(0) })).toBe(
      '{"a":[1,{"b":{}}],"when":"1970-01-01T00:00:00.000Z"}',
    )
    expect(renderValue('text as is')).toBe('text as is')
    expect(renderValue(undefined)).toBe('null')
  })

  test('a long rendering is cut, saying how much was left out', () => {
    expect(renderValue({ big: 1n, text: 'x'.repeat(100) }, 20)).toBe(
      '{"big":"1","text":"x… (101 more characters)',
    )
  })
})
