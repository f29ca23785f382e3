import { describe, expect, it } from 'vitest'
import { type AnyActorLogic, createActor, fromPromise } from 'xstate'
import { type AgentActor, agentMachine } from '../agent/agent-machine.js'
import { defineAgent } from '../agent/define-agent.js'
import { leadContext } from '../agent/lead-context.fixture.js'
import { defaultLimits } from '../agent/limits.js'
import { SnapshotError } from '../errors.js'
import { AgentEntry, toAgentRecord } from './agent-entry.js'

const lead = defineAgent({ name: 'lead', instructions: 'you lead' })

const context = leadContext()

/** An entry whose actor runs `logic`: the agent machine, or what XState might hand back instead. */
function entryOf(logic: AnyActorLogic): AgentEntry {
  const actor = createActor(logic, { input: context })
  actor.subscribe({ error: () => {} })
  actor.start()
  // The guard exists for an actor that is not what its type says, so the test makes one.
  return new AgentEntry('lead', lead, defaultLimits, actor as unknown as AgentActor, null, 0)
}

describe('toAgentRecord', () => {
  it("stores an agent actor's persisted snapshot with what a store indexes", () => {
    const entry = entryOf(agentMachine)
    entry.actor.send({ type: 'START', deadline: null })
    const record = toAgentRecord(entry)
    expect(record).toMatchObject({ version: 1, runId: 'r1', id: 'lead', name: 'lead', status: 'running' })
    expect(record.snapshot).toMatchObject({ status: 'active', value: { running: 'thinking' } })
    expect(record.snapshot.context.messages).toEqual(context.messages)
  })

  it('refuses a persisted snapshot without a state value and context, naming what it expected', () => {
    const entry = entryOf(fromPromise(() => new Promise(() => {})))
    expect(() => toAgentRecord(entry)).toThrow(SnapshotError)
    expect(() => toAgentRecord(entry)).toThrow(/expected status, value, context and children/)
  })

  it('refuses the snapshot of an agent actor that stopped on an error, rather than store it', () => {
    const entry = entryOf(agentMachine)
    entry.actor.send({ type: 'START', deadline: null })
    // An outcome without its parts makes the step throw inside the machine: XState's status is 'error'.
    entry.actor.send({ type: 'REPLIED', outcome: undefined as never, maxRepairs: 2 })
    expect(entry.actor.getSnapshot().status).toBe('error')
    expect(() => toAgentRecord(entry)).toThrow(SnapshotError)
  })
})
