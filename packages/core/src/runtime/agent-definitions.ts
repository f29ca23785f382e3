import type { AgentDefinition } from '../agent/define-agent.js'
import { checkLimits } from '../agent/limits.js'
import { InvalidInputError } from '../errors.js'
import { planAgentName } from '../plan/plan-agent.js'

/** The runtime's agents by name, each checked: a definition, a free name, limits, sub-agents it has. */
export function indexAgents(agents: readonly AgentDefinition[]): Map<string, AgentDefinition> {
  if (!Array.isArray(agents) || agents.length === 0) {
    throw new InvalidInputError('createRuntime needs at least one agent')
  }
  const byName = new Map<string, AgentDefinition>()
  for (const [index, agent] of agents.entries()) {
    // From JavaScript or a config file, an agent may be a plain object: say so, not "x is not iterable".
    if (typeof agent?.name !== 'string' || !Array.isArray(agent.tools) || !Array.isArray(agent.subagents)) {
      throw new InvalidInputError(
        `agents[${index}] (${JSON.stringify(agent?.name ?? null)}) is not an agent definition: make it with defineAgent({ name, instructions, tools, subagents })`,
      )
    }
    if (agent.name === planAgentName) {
      throw new InvalidInputError(
        `agent name "${planAgentName}" is taken by runPlan's own agent; choose another`,
      )
    }
    if (byName.has(agent.name)) throw new InvalidInputError(`agent "${agent.name}" is defined twice`)
    // Checked here rather than when the agent is first launched, where it would fail its parent.
    if (agent.limits) checkLimits(agent.limits, `of agent "${agent.name}"`)
    byName.set(agent.name, agent)
  }
  for (const agent of agents) {
    for (const sub of agent.subagents) {
      if (!byName.has(sub)) {
        throw new InvalidInputError(
          `agent "${agent.name}" lists sub-agent "${sub}", which is not among the runtime's agents`,
        )
      }
    }
  }
  return byName
}
