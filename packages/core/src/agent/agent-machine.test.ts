import { describe, expect, it } from 'vitest'
import type { AgentEventInput } from '../events/types.js'
import { started } from './agent-loop.js'
import { AgentLifecycle } from './agent-machine.js'
import { type AgentContext, initialContext } from './context.js'

function agent(id: string, result: unknown): { running: AgentContext; done: AgentContext } {
  const running = started(
    initialContext({
      runId: 'r1',
      agentId: id,
      name: 'w',
      parentId: null,
      depth: 0,
      task: 'do it',
      systemMessage: { role: 'system', content: 'you work' },
    }),
    null,
  )
  return { running, done: { ...running, result, endedAt: running.startedAt + 5 } }
}

describe('AgentLifecycle', () => {
  // Each move is computed by XState once per process: the agents that make it after the first must
  // still get their own entry actions, with their own context.
  it('reports every agent making the same move with its own context', () => {
    const reported: [string, AgentEventInput][] = []
    const lifecycle = new AgentLifecycle((context, event) => reported.push([context.agentId, event]))
    const finals = ['a', 'b', 'c'].map((id) => {
      const { running, done } = agent(id, `result of ${id}`)
      const state = lifecycle.next(lifecycle.at('idle'), { type: 'RUN', context: running })
      expect(state.value).toBe('running')
      return lifecycle.next(state, { type: 'FINISH', context: done })
    })
    for (const state of finals) expect(state.status).toBe('done')
    expect(reported).toEqual(
      ['a', 'b', 'c'].map((id) => [
        id,
        { type: 'agent.completed', result: `result of ${id}`, durationMs: 5 },
      ]),
    )
  })

  // The moves are cached for the process: each run still hears only its own agents.
  it("reports each agent to its own run, also from inside another run's report", () => {
    const heard: Record<string, string[]> = { one: [], two: [] }
    const two = new AgentLifecycle((context) => heard.two!.push(context.agentId))
    const b = agent('b', 2)
    const one = new AgentLifecycle((context) => {
      heard.one!.push(context.agentId)
      // A listener of run one's events moves an agent of run two.
      if (context.agentId === 'a') two.next(two.at('running'), { type: 'FINISH', context: b.done })
    })
    const a = agent('a', 1)
    const c = agent('c', 3)
    one.next(one.at('running'), { type: 'FINISH', context: a.done })
    one.next(one.at('running'), { type: 'FINISH', context: c.done })
    expect(heard).toEqual({ one: ['a', 'c'], two: ['b'] })
  })

  it('leaves an agent where it is on an event its state does not take, and reports nothing', () => {
    const reported: string[] = []
    const lifecycle = new AgentLifecycle((context) => reported.push(context.agentId))
    const { running } = agent('a', 1)
    const state = lifecycle.at('running')
    // The first time XState computes it, the second time it is the cached move.
    for (let i = 0; i < 2; i++) expect(lifecycle.next(state, { type: 'RUN', context: running })).toBe(state)
    expect(reported).toEqual([])
  })

  it('refuses a state value the machine does not have', () => {
    const lifecycle = new AgentLifecycle(() => {})
    expect(() => lifecycle.at('sleeping' as never)).toThrow()
  })
})
