import { type AgentDefinition, defineAgent } from '../agent/define-agent.js'
import { settledChildren } from '../models/scripted-model.js'
import type { ChatModel, ModelRequest } from '../models/types.js'
import type { Plan } from './plan.js'

/** The internal root agent of `runPlan`: launches the plan, waits, and finishes with every result. */
export const planAgentName = 'cohort-plan'

export function definePlanAgent(agentNames: string[]): AgentDefinition {
  return defineAgent({
    name: planAgentName,
    instructions: 'Runs a plan given as data.',
    subagents: agentNames,
    model: planModel,
    // The runtime's limits bound the plan's steps, not its own root: it takes two turns (launch
    // and wait, then finish), and lasts as long as its steps do. Its launch's size is checked
    // against the runtime's maxChildrenPerLaunch by runPlan, before the run is stored.
    limits: { maxChildrenPerLaunch: 100_000, maxRepairs: 0, timeoutMs: null, maxSteps: 2 },
  })
}

/**
 * Not a language model: a deterministic script, so a plan run is stored, resumed and
 * replayed like any other run. The plan is the root agent's task.
 */
const planModel: ChatModel = {
  name: 'plan',
  async complete(request: ModelRequest) {
    if (request.turn === 0) {
      const plan = JSON.parse(request.agent.task) as Plan
      const launch = { action: 'launch_subagents', agents: plan.agents, on_cycle: plan.onCycle ?? 'refuse' }
      return { text: JSON.stringify([launch, { action: 'wait_for_subagents' }]) }
    }
    const results = settledChildren(request)
    const byId = Object.fromEntries(
      results.map((r) => [r.id, r.status === 'completed' ? r.result : { error: r.error }]),
    )
    return { text: JSON.stringify({ action: 'finish', result: byId }) }
  },
}
