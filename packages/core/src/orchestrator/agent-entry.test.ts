import { describe, expect, it } from 'vitest'
import { createActor } from 'xstate'
import { afterAct, afterThought, fail, type Step, started } from '../agent/agent-loop.js'
import { AgentLifecycle, type LifecycleEvent } from '../agent/agent-machine.js'
import { type AgentContext, initialContext } from '../agent/context.js'
import { defineAgent } from '../agent/define-agent.js'
import { resolveLimits } from '../agent/limits.js'
import type { Action } from '../protocol/actions.js'
import { type AgentEntry, toAgentRecord } from './agent-entry.js'

const initial = initialContext({
  runId: 'r1',
  agentId: 'root',
  name: 'w',
  parentId: null,
  depth: 0,
  task: 'do it',
  systemMessage: { role: 'system', content: 'you work' },
})
const running = started(initial, null)

function thought(context: AgentContext, actions: Action[]): Step {
  const output = {
    assistant: { role: 'assistant' as const, content: JSON.stringify(actions) },
    parse: { ok: true as const, actions },
    feedback: [],
    durationMs: 1,
    inboxConsumed: 0,
  }
  return afterThought(context, output, 2)
}

const launch: Action = { action: 'launch_subagents', agents: [{ agent: 'w', task: 't', id: 'a' }] }
const children = [{ localId: 'a', id: 'root.a', agent: 'w', task: 't' }]
const launching = thought(running, [launch, { action: 'wait_for_subagents' }]).context
const asking = thought(running, [{ action: 'call_tool', tool: 'deploy', args: {} }]).context
const suspend = {
  messages: [],
  suspend: { kind: 'approval' as const, callId: 'c1', key: '0.0', tool: 'deploy', args: {}, prompt: 'ok?' },
}

/** Event sequences that leave the agent in each of its states (the loop's steps computed as the orchestrator does). */
const paths: Record<string, LifecycleEvent[]> = {
  idle: [],
  thinking: [{ type: 'RUN', context: running }],
  executing: [{ type: 'RUN', context: launching }],
  'suspended on children': [
    { type: 'RUN', context: running },
    { type: 'SUSPEND', context: afterAct(launching, { messages: [], children }, 2).context },
  ],
  'suspended on a person': [
    { type: 'RUN', context: asking },
    { type: 'AWAIT', context: afterAct(asking, suspend, 2).context },
  ],
  completed: [
    { type: 'RUN', context: running },
    { type: 'FINISH', context: thought(running, [{ action: 'finish', result: { n: 1 } }]).context },
  ],
  failed: [
    { type: 'RUN', context: running },
    { type: 'FAIL', context: fail(running, new Error('stop')) },
  ],
}

describe('toAgentRecord', () => {
  // The record is built without XState's getPersistedSnapshot (a copy and a walk per write):
  // it must be what that function returns, or a restore would not find what it expects.
  for (const [state, events] of Object.entries(paths)) {
    it(`writes what XState persists, ${state}`, () => {
      const definition = defineAgent({ name: 'w', instructions: 'work' })
      const lifecycle = new AgentLifecycle(() => {})
      // The same events, to the machine as the orchestrator steps it and to an XState actor.
      const actor = createActor(lifecycle.machine, { input: initial })
      actor.start()
      let live = lifecycle.at('idle')
      const states: unknown[] = []
      for (const event of events) {
        actor.send(event)
        live = lifecycle.next(live, event)
        states.push(live.value)
        expect(live.value).toEqual(actor.getSnapshot().value)
      }
      // Every event was taken: each moved the machine.
      expect(new Set(states).size).toBe(events.length)
      // The live context is the orchestrator's: the last event brought it.
      const context = events.at(-1)?.context ?? initial
      const entry: AgentEntry = {
        id: 'root',
        definition,
        limits: resolveLimits({}, undefined),
        state: live,
        context,
        attached: false,
        parentId: null,
        depth: 0,
        settled: false,
        onSettle: [],
        dependents: [],
        effect: 0,
      }
      const plain = (value: unknown) => JSON.parse(JSON.stringify(value))
      const record = toAgentRecord(entry)
      expect(plain(record.snapshot)).toEqual(plain({ ...actor.getPersistedSnapshot(), context }))
      // Restored from its record, by XState or by the orchestrator, the machine is where it was.
      const restored = createActor(lifecycle.machine, { snapshot: record.snapshot } as never).getSnapshot()
      expect(restored.value).toEqual(live.value)
      expect(restored.status).toBe(live.status)
      expect(restored.context).toEqual(context)
      expect(lifecycle.at(record.snapshot.value as never).status).toBe(live.status)
    })
  }
})
