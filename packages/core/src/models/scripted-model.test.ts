import { describe, expect, test } from 'vitest'
import { ModelError } from '../errors.js'
import { scriptedModel, settledChildren } from './scripted-model.js'
import type { ModelRequest } from './types.js'

function request(name: string, turn: number, signal = new AbortController().signal): ModelRequest {
  return {
    runId: 'r1',
    agent: { id: name, name, depth: 0, parentId: null, task: 'task' },
    turn,
    messages: [],
    tools: [],
    signal,
  }
}

describe('scriptedModel', () => {
  test('replies by agent and turn, from objects, text, and a script that returns a promise', async () => {
    const model = scriptedModel({
      lead: [{ action: 'finish', result: 1 }, 'plain text'],
      worker: async (req) => ({ action: 'finish', result: req.turn }),
    })
    expect((await model.complete(request('lead', 0))).text).toBe('{"action":"finish","result":1}')
    expect((await model.complete(request('lead', 1))).text).toBe('plain text')
    expect((await model.complete(request('worker', 4))).text).toBe('{"action":"finish","result":4}')
  })

  test('a missing script or turn is a rejected call, not a throw', async () => {
    const model = scriptedModel({ lead: [{ action: 'finish', result: 1 }] })
    const unknown = model.complete(request('other', 0))
    await expect(unknown).rejects.toThrow(ModelError)
    await expect(unknown).rejects.toThrow('no script for agent "other"')
    // Turns counted from 1, as the log counts them: request.turn 1 is the log's "turn 2".
    await expect(model.complete(request('lead', 1))).rejects.toThrow(
      'scripted model has no reply for turn 2 of agent "lead" (its script has 1 reply)',
    )
    await expect(scriptedModel({ lead: {} as never }).complete(request('lead', 0))).rejects.toThrow(
      'script for agent "lead" is no list of replies nor a function',
    )
    const failing = scriptedModel(() => {
      throw new Error('script broke')
    })
    await expect(failing.complete(request('lead', 0))).rejects.toThrow('script broke')
  })

  test('waits its latency before it replies, and stops waiting when aborted', async () => {
    const model = scriptedModel(() => ({ action: 'finish', result: 'late' }), { latencyMs: 30 })
    const started = performance.now()
    expect((await model.complete(request('lead', 0))).text).toContain('late')
    expect(performance.now() - started).toBeGreaterThanOrEqual(25)
    const controller = new AbortController()
    const pending = model.complete(request('lead', 0, controller.signal))
    controller.abort(new Error('cancelled'))
    await expect(pending).rejects.toThrow('cancelled')
  })
})

test("settledChildren finds the children's results after its last reply, messages from them after it or not", () => {
  const results = [{ id: 'a', agent: 'worker', status: 'completed' as const, result: 1 }]
  const settled = { role: 'user' as const, content: `Sub-agents settled (1): ${JSON.stringify(results)}` }
  const reply = { role: 'assistant' as const, content: '{"action":"wait_for_subagents"}' }
  const inbox = { role: 'user' as const, content: 'Messages:\n- from a: done early' }
  expect(settledChildren({ messages: [reply, settled, inbox] })).toEqual(results)
  expect(settledChildren({ messages: [reply, settled] })).toEqual(results)
  // Results an earlier reply already answered are not given again.
  expect(settledChildren({ messages: [settled, reply, inbox] })).toEqual([])
})
