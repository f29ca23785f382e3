import { describe, expect, it } from 'vitest'
import { createActor } from 'xstate'
import { type AgentEvent, type AgentServices, createAgentMachine } from '../agent/agent-machine.js'
import { defineAgent } from '../agent/define-agent.js'
import { resolveLimits } from '../agent/limits.js'
import type { Action } from '../protocol/actions.js'
import { type AgentEntry, toAgentRecord } from './agent-entry.js'

const services: AgentServices = {
  think: () => new Promise(() => {}),
  act: () => new Promise(() => {}),
  awaitChildren: () => new Promise(() => {}),
  notify: () => {},
  maxRepairs: () => 2,
}

function thought(actions: Action[]): AgentEvent {
  return {
    type: 'THOUGHT',
    output: {
      assistant: { role: 'assistant', content: JSON.stringify(actions) },
      parse: { ok: true, actions },
      feedback: [],
      durationMs: 1,
      inboxConsumed: 0,
    },
  }
}

const launch: Action = { action: 'launch_subagents', agents: [{ agent: 'w', task: 't', id: 'a' }] }
const children = [{ localId: 'a', id: 'root.a', agent: 'w', task: 't' }]
const acted: AgentEvent = { type: 'ACTED', output: { messages: [], children } }
const suspend: AgentEvent = {
  type: 'ACTED',
  output: {
    messages: [],
    suspend: { kind: 'approval', callId: 'c1', key: '0.0', tool: 'deploy', args: {}, prompt: 'ok?' },
  },
}

/** Event sequences that leave the agent in each of its states. */
const paths: Record<string, AgentEvent[]> = {
  idle: [],
  thinking: [{ type: 'START' }],
  executing: [{ type: 'START' }, thought([launch, { action: 'wait_for_subagents' }])],
  'suspended on children': [{ type: 'START' }, thought([launch, { action: 'wait_for_subagents' }]), acted],
  'suspended on a person': [
    { type: 'START' },
    thought([{ action: 'call_tool', tool: 'deploy', args: {} }]),
    suspend,
  ],
  completed: [{ type: 'START' }, thought([{ action: 'finish', result: { n: 1 } }])],
  failed: [{ type: 'START' }, { type: 'CANCEL', reason: 'stop' }],
}

describe('toAgentRecord', () => {
  // The record is built without XState's getPersistedSnapshot (a copy and a walk per write):
  // it must be what that function returns, or a restore would not find what it expects.
  for (const [state, events] of Object.entries(paths)) {
    it(`writes what XState persists, ${state}`, () => {
      const definition = defineAgent({ name: 'w', instructions: 'work' })
      const actor = createActor(createAgentMachine(services), {
        input: {
          runId: 'r1',
          agentId: 'root',
          name: 'w',
          parentId: null,
          depth: 0,
          task: 'do it',
          systemMessage: { role: 'system', content: 'you work' },
          dependsOn: [],
          priority: 0,
          timeoutMs: null,
          fallback: null,
        },
      })
      actor.start()
      for (const event of events) actor.send(event)
      const entry: AgentEntry = {
        id: 'root',
        definition,
        limits: resolveLimits({}, undefined),
        actor,
        parentId: null,
        depth: 0,
        settled: false,
        onSettle: [],
        dependents: [],
        effect: 0,
      }
      const plain = (value: unknown) => JSON.parse(JSON.stringify(value))
      expect(plain(toAgentRecord(entry).snapshot)).toEqual(plain(actor.getPersistedSnapshot()))
      actor.stop()
      const stopped = plain(actor.getPersistedSnapshot())
      // A stopped actor was let go of, not ended: it restores as active (a final one stays done).
      const status = stopped.status === 'stopped' ? 'active' : stopped.status
      expect(plain(toAgentRecord(entry).snapshot)).toEqual({ ...stopped, status })
    })
  }
})
