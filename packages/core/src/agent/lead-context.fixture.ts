import { type AgentContext, initialContext } from './context.js'

/** A new root agent's context, as the unit tests of the agent and its orchestrator start from. */
export function leadContext(): AgentContext {
  return initialContext({
    runId: 'r1',
    agentId: 'lead',
    name: 'lead',
    parentId: null,
    depth: 0,
    task: 'do it',
    systemMessage: { role: 'system', content: 'you lead' },
  })
}
