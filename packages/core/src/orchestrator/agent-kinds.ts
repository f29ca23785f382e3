import type { AgentDefinition } from '../agent/define-agent.js'
import type { ToolSpec } from '../models/types.js'
import { protocolToolSpecs } from '../protocol/prompt.js'
import type { AnyTool } from '../tools/define-tool.js'

/** What depends only on an agent's definition: its tools by name, the functions offered to its model. */
export interface AgentKind {
  tools: ReadonlyMap<string, AnyTool>
  specs: ToolSpec[]
}

/** Each kind of agent of a run, built once when its first agent needs it. */
export class AgentKinds {
  private readonly kinds = new Map<string, AgentKind>()

  of(definition: AgentDefinition): AgentKind {
    let kind = this.kinds.get(definition.name)
    if (!kind) {
      kind = {
        tools: new Map(definition.tools.map((tool) => [tool.name, tool])),
        specs: protocolToolSpecs(definition),
      }
      this.kinds.set(definition.name, kind)
    }
    return kind
  }
}
