import { createActor, type Snapshot } from 'xstate'
import { type AgentSnapshot, agentMachine } from '../agent/agent-machine.js'
import { type AgentContext, initialContext } from '../agent/context.js'
import type { AgentDefinition } from '../agent/define-agent.js'
import { type RunLimits, resolveLimits } from '../agent/limits.js'
import { CohortError, SnapshotError } from '../errors.js'
import type { AgentEventInput } from '../events/types.js'
import type { ChatMessage } from '../models/types.js'
import type { RunReads } from '../persistence/read.js'
import type { AgentRecord } from '../persistence/records.js'
import { systemPrompt } from '../protocol/prompt.js'
import { AgentEntry } from './agent-entry.js'
import type { RunActor } from './run-machine.js'

/** A new agent, as a launch (or a run's start) asks for it. */
export interface NewAgent {
  id: string
  definition: AgentDefinition
  task: string
  parentId: string | null
  depth: number
  dependsOn?: string[]
  runsAfter?: string[]
  priority?: number
  timeoutMs?: number | null
  fallback?: { value: unknown } | null
  /** An earlier session's messages, before its task (`AgentInput.history`). */
  history?: readonly ChatMessage[]
}

/** What the registry tells its run about each agent's actor. */
export interface RegistryHooks {
  /** A new snapshot of the agent's actor. */
  changed(entry: AgentEntry, snapshot: AgentSnapshot): void
  /** An event the agent's machine emitted (`agent.*`). */
  emitted(entry: AgentEntry, event: AgentEventInput): void
  /** The actor failed: the runtime's own failure. */
  failed(error: unknown): void
}

/**
 * The agents of one run: a `Map` by id (never a machine's context: a step costs the same with
 * 10,000 agents as with 100), each entry holding the agent's actor, made new or from its stored
 * record as a child of the run's actor and registered in its system under the agent's id.
 */
export class AgentRegistry {
  readonly entries = new Map<string, AgentEntry>()
  /** Agents launches under way have yet to make: counted against `maxAgents` with those made. */
  pending = 0
  private readonly limitsByKind = new Map<string, RunLimits>()
  private readonly systemMessages = new Map<string, ChatMessage>()

  constructor(
    private readonly runId: string,
    private readonly runActor: RunActor,
    private readonly definitions: ReadonlyMap<string, AgentDefinition>,
    private readonly limits: RunLimits,
    private readonly reads: RunReads,
    private readonly hooks: RegistryHooks,
  ) {}

  get(id: string): AgentEntry | undefined {
    return this.entries.get(id)
  }

  definition(name: string): AgentDefinition {
    const definition = this.definitions.get(name)
    if (!definition)
      throw new CohortError('UNKNOWN_AGENT', `agent "${name}" is not registered in this runtime`)
    return definition
  }

  limitsFor(definition: AgentDefinition): RunLimits {
    let limits = this.limitsByKind.get(definition.name)
    if (!limits) {
      limits = resolveLimits(this.limits, definition.limits)
      this.limitsByKind.set(definition.name, limits)
    }
    return limits
  }

  /** One system message object per kind, shared by its agents. */
  private systemMessageFor(definition: AgentDefinition): ChatMessage {
    let message = this.systemMessages.get(definition.name)
    if (message === undefined) {
      message = { role: 'system', content: systemPrompt(definition, this.definitions) }
      this.systemMessages.set(definition.name, message)
    }
    return message
  }

  /** Makes a new agent's actor, idle: `Settlement.startWhenReady` starts it. */
  create(agent: NewAgent): AgentEntry {
    const context = initialContext({
      runId: this.runId,
      agentId: agent.id,
      name: agent.definition.name,
      parentId: agent.parentId,
      depth: agent.depth,
      task: agent.task,
      systemMessage: this.systemMessageFor(agent.definition),
      ...(agent.history && { history: agent.history }),
      ...(agent.dependsOn && agent.dependsOn.length > 0 && { dependsOn: agent.dependsOn }),
      ...(agent.runsAfter && agent.runsAfter.length > 0 && { runsAfter: agent.runsAfter }),
      priority: agent.priority ?? 0,
      timeoutMs: agent.timeoutMs ?? null,
      fallback: agent.fallback ?? null,
    })
    return this.spawn(agent.id, agent.definition, agent.parentId, agent.depth, { input: context })
  }

  /** The agent's actor, made again from its stored record (`createActor(agentMachine, { snapshot })`). */
  restore(record: AgentRecord, mode: AgentEntry['mode'] = 'local'): AgentEntry {
    const source = `run ${this.runId}, agent ${record.id}`
    const definition = this.definitions.get(record.name)
    if (!definition) {
      throw new SnapshotError(
        source,
        `agent definition "${record.name}" is not registered in this runtime`,
        'name',
      )
    }
    if (record.runId !== this.runId)
      throw new SnapshotError(source, `record belongs to run "${record.runId}"`, 'runId')
    // The context repeats who the agent is; the agent acts (and is written back) as its context says.
    const { context: stored } = record.snapshot
    for (const [field, value] of [
      ['runId', record.runId],
      ['agentId', record.id],
      ['name', record.name],
      ['parentId', record.parentId],
      ['depth', record.depth],
    ] as const) {
      if (stored[field] !== value)
        throw new SnapshotError(
          source,
          `${JSON.stringify(stored[field])}; expected ${JSON.stringify(value)}, as the record says`,
          `snapshot.context.${field}`,
        )
    }
    const missingTool = record.snapshot.context.pending.find(
      (action) =>
        action.action === 'call_tool' && !definition.tools.some((tool) => tool.name === action.tool),
    )
    if (missingTool?.action === 'call_tool' && record.snapshot.status !== 'done') {
      throw new SnapshotError(
        source,
        `its next action calls tool "${missingTool.tool}", which agent "${record.name}" does not have in this runtime; give it the tool again to resume`,
        'snapshot.context.pending',
      )
    }
    // A restored agent shares its kind's system message again, when it is still the same text.
    const { messages } = record.snapshot.context
    const shared = this.systemMessageFor(definition)
    if (messages[0]?.role === 'system' && messages[0].content === shared.content) messages[0] = shared
    try {
      // The stored state value and context, resolved against the machine (XState's
      // `resolveState`): an unknown state name is refused here, and a final state is done again.
      const { value, context } = record.snapshot
      const from = { input: context, snapshot: agentMachine.resolveState({ value, context }) }
      return this.spawn(record.id, definition, record.parentId, record.depth, from, mode)
    } catch (error) {
      this.entries.delete(record.id)
      throw new SnapshotError(
        source,
        `cannot restore the agent machine: ${(error as Error).message}`,
        'snapshot',
      )
    }
  }

  /**
   * Restores, as running elsewhere, the stored agents among `ids` this process does not hold
   * (a segment's children and dependencies); returns how many it found.
   */
  async restoreRemote(ids: readonly string[]): Promise<number> {
    const missing = ids.filter((id) => !this.entries.has(id))
    const records = await Promise.all(missing.map((id) => this.reads.agentRecord(id)))
    let found = 0
    for (const record of records) {
      if (!record || this.entries.has(record.id)) continue
      this.restore(record, 'remote')
      found++
    }
    return found
  }

  private spawn(
    id: string,
    definition: AgentDefinition,
    parentId: string | null,
    depth: number,
    from: { input: AgentContext; snapshot?: Snapshot<unknown> },
    mode: AgentEntry['mode'] = 'local',
  ): AgentEntry {
    const actor = createActor(agentMachine, { parent: this.runActor, id, systemId: id, ...from })
    const entry = new AgentEntry(id, definition, this.limitsFor(definition), actor, parentId, depth)
    entry.mode = mode
    this.entries.set(id, entry)
    actor.on('*', (event) => this.hooks.emitted(entry, event))
    actor.start()
    // As it starts, an agent is as new or as stored: nothing to write or act on yet.
    entry.seen = actor.getSnapshot()
    if (from.snapshot !== undefined) entry.stored = entry.seen
    actor.subscribe({
      next: (snapshot) => this.hooks.changed(entry, snapshot),
      error: (error) => this.hooks.failed(error),
    })
    return entry
  }
}
