import { describe, expect, test } from 'vitest'
import { type AgentContext, agentContextSchema, copyContext, initialContext } from './context.js'

describe('copyContext', () => {
  test('copies every field a stored context has, the optional ones only when present', () => {
    // A field the schema knows and the copy forgot would vanish at the agent's next step.
    const everyField = Object.fromEntries(
      [...Object.keys(agentContextSchema.shape), 'result'].map((key) => [key, { marker: key }]),
    ) as unknown as AgentContext
    const copy = copyContext(everyField)
    expect(copy).toStrictEqual(everyField)
    expect(copy).not.toBe(everyField)

    const fresh = initialContext({
      runId: 'r1',
      agentId: 'a',
      name: 'worker',
      parentId: null,
      depth: 0,
      task: 'go',
      systemMessage: { role: 'system', content: 'you work' },
    })
    expect('result' in copyContext(fresh) || 'error' in copyContext(fresh)).toBe(false)
    // A finish with no result still has one (undefined), as a spread would have kept it.
    expect('result' in copyContext({ ...fresh, result: undefined })).toBe(true)
  })
})
