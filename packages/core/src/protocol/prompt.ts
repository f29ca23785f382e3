import { z } from 'zod'
import type { AgentDefinition } from '../agent/define-agent.js'
import type { ToolSpec } from '../models/types.js'
import { jsonSchemaOf, toolSpec } from '../tools/define-tool.js'
import {
  finishArgsSchema,
  launchArgsSchema,
  launchSpecSchema,
  sendMessageArgsSchema,
  waitArgsSchema,
} from './actions.js'

/** The system prompt: the agent's instructions, then how to act, with its sub-agents and tools. */
export function systemPrompt(agent: AgentDefinition, catalog: ReadonlyMap<string, AgentDefinition>): string {
  const lines = [
    agent.instructions.trim(),
    '',
    'Reply with JSON actions (one object, or an array run in order):',
  ]
  if (agent.subagents.length > 0) {
    lines.push(
      '- {"action": "launch_subagents", "agents": [{"agent": NAME, "task": TEXT, "id": ID}]} starts sub-agents in parallel and returns at once.',
      '- {"action": "wait_for_subagents", "ids": [ID, ...]} waits until those sub-agents finish (no ids: all of them), then gives you their results.',
    )
  }
  if (agent.tools.length > 0) {
    lines.push('- {"action": "call_tool", "tool": NAME, "args": {...}} runs a tool and gives you its result.')
  }
  lines.push(
    '- {"action": "send_message", "to": "parent" | ID, "text": TEXT} sends a note to your parent, a sub-agent or a sibling; it reads it on its next turn.',
    agent.output
      ? `- {"action": "finish", "result": RESULT} ends your work with that result; RESULT must match ${JSON.stringify(jsonSchemaOf(agent.output))}.`
      : '- {"action": "finish", "result": ANY_JSON} ends your work with that result.',
  )
  if (agent.subagents.length > 0) {
    lines.push('', 'Sub-agents you can launch:')
    for (const name of agent.subagents) {
      const subagent = catalog.get(name)
      const instructions = subagent?.instructions.split('\n')[0] ?? ''
      const returns = subagent?.output
        ? ` Returns ${JSON.stringify(jsonSchemaOf(subagent.output, 'output'))}.`
        : ''
      lines.push(`- ${name}: ${instructions}${returns}`)
    }
  }
  if (agent.tools.length > 0) {
    lines.push('', 'Tools:')
    for (const tool of agent.tools) {
      lines.push(`- ${tool.name}: ${tool.description} Arguments: ${JSON.stringify(tool.jsonSchema)}`)
    }
  }
  return lines.join('\n').trim()
}

/** The functions offered to models that call tools natively: the protocol actions and the agent's tools. */
export function protocolToolSpecs(agent: AgentDefinition): ToolSpec[] {
  const specs: ToolSpec[] = []
  if (agent.subagents.length > 0) {
    const launchable = launchSpecSchema.extend({ agent: z.enum(agent.subagents as [string, ...string[]]) })
    specs.push(
      {
        name: 'launch_subagents',
        description: 'Start sub-agents in parallel; returns at once with their ids.',
        parameters: jsonSchemaOf(launchArgsSchema.extend({ agents: z.array(launchable).min(1) })),
      },
      {
        name: 'wait_for_subagents',
        description:
          'Wait until the given sub-agents (all unsettled ones when ids is omitted) finish, then get their results.',
        parameters: jsonSchemaOf(waitArgsSchema),
      },
    )
  }
  specs.push({
    name: 'send_message',
    description: 'Send a note to your parent ("parent"), a sub-agent or a sibling, by id.',
    parameters: jsonSchemaOf(sendMessageArgsSchema),
  })
  const finishArgs = agent.output ? finishArgsSchema.extend({ result: agent.output }) : finishArgsSchema
  specs.push({
    name: 'finish',
    description: 'End your work with a result.',
    parameters: { ...jsonSchemaOf(finishArgs), required: ['result'] },
  })
  for (const tool of agent.tools) specs.push(toolSpec(tool))
  return specs
}

export function repairText(error: string): string {
  return `Your reply could not be used: ${error}. Reply again with valid JSON actions.`
}
