import { expect, test } from 'vitest'
import { callDigest, idempotencyKey } from './tool-call.js'

test("a tool call's idempotency key: the digest made when it was parsed, so the key stays when a store reorders its arguments", () => {
  const asGiven = { action: 'call_tool' as const, tool: 'pay', args: { customer: 'c', amount: 5 } }
  const digest = callDigest(asGiven)
  // Read back from jsonb, keys in another order, the digest stored beside them.
  const readBack = { action: 'call_tool' as const, tool: 'pay', args: { amount: 5, customer: 'c' }, digest }
  expect(idempotencyKey('r1', 'lead', '0.0', readBack)).toBe(`r1:lead:0.0:${digest}`)
  // An action stored before actions kept their digest keeps the key it was given then.
  expect(idempotencyKey('r1', 'lead', '0.0', asGiven)).toBe('r1:lead:0.0:_2Ww_comGyUpfEZJ')
  // Other arguments, another key.
  expect(callDigest({ ...asGiven, args: { customer: 'c', amount: 6 } })).not.toBe(digest)
})
