// @ts-check
// The selected agent: its facts, what it waits on you for, its error or result, and its messages
// with the tool calls in them.
import { useLayoutEffect, useRef } from 'preact/hooks'
import { AwaitingForm } from './awaiting-form.js'
import { formatDuration, formatTime, pretty, prettyText } from './format.js'
import { html } from './html.js'
import { awaitingKind, shownState, state } from './store.js'

/** @typedef {import('./api.js').AgentSummary} AgentSummary */
/** @typedef {import('./api.js').ChatMessage} ChatMessage */

/** @param {{ now: number }} props */
export function AgentDetail({ now }) {
  const panel = useRef(/** @type {HTMLDivElement | null} */ (null))
  // A reader at the bottom of the messages stays there as new ones arrive.
  const atBottom = useRef(false)
  useLayoutEffect(() => {
    if (atBottom.current && panel.current) panel.current.scrollTop = panel.current.scrollHeight
  })
  const onScroll = () => {
    const node = panel.current
    if (node)
      atBottom.current = node.scrollTop > 0 && node.scrollHeight - node.scrollTop - node.clientHeight < 24
  }
  return html`
    <section aria-label="Agent detail">
      <h2>Agent</h2>
      <div id="detail" class="scroll" ref=${panel} onScroll=${onScroll}><${DetailContent} now=${now} /></div>
    </section>
  `
}

/** @param {{ now: number }} props */
function DetailContent({ now }) {
  const { agentId, detail, detailError, runId, actionError } = state
  if (!agentId) return html`<div class="empty">Select an agent in the tree or the timeline.</div>`
  if (detailError && !detail)
    return html`<div class="empty error-text">Agent ${agentId}: ${detailError}</div>`
  if (!detail || !runId) return html`<div class="empty">Loading ${agentId}…</div>`
  const { agent, messages } = detail
  const duration = (agent.endedAt != null ? agent.endedAt : now) - agent.startedAt
  const failed =
    actionError && actionError.runId === runId && actionError.agentId === agent.id ? actionError : null
  const waiting = awaitingKind(agent) ? agent.awaiting : undefined
  const shown = shownState(agent)
  return html`
    <div class="detail-head" data-agent-id=${agent.id} data-state=${shown}>
      <div class="detail-title">
        <strong>${agent.name}</strong>
        <span class="mono muted">${agent.id}</span>
        <span class="pill" data-state=${shown}>${shown}</span>
      </div>
      <dl class="facts">
        <dt>parent</dt>
        <dd class="mono">${agent.parentId || '—'}</dd>
        <dt>depth</dt>
        <dd>${agent.depth}</dd>
        ${agent.dependsOn ? html`<dt>after</dt><dd class="mono">${agent.dependsOn.join(', ')}</dd>` : ''}
        <dt>turns</dt>
        <dd>${agent.turns}</dd>
        <dt>started</dt>
        <dd>${formatTime(agent.startedAt)}</dd>
        <dt>${agent.endedAt != null ? 'duration' : 'elapsed'}</dt>
        <dd>${formatDuration(duration)}</dd>
        <dt>task</dt>
        <dd>${agent.task}</dd>
      </dl>
    </div>
    ${
      waiting
        ? // Keyed by the wait itself: the same wait keeps its form (typed text, focus), a new one gets a fresh one.
          html`<${AwaitingForm}
            key=${`${runId}|${agent.id}|${waiting.kind}|${waiting.callId}|${waiting.key}`}
            runId=${runId}
            agentId=${agent.id}
            waiting=${waiting}
          />`
        : null
    }
    ${
      failed
        ? html`<div class="error-box" id="agent-action-error" role="alert" data-action-error>${failed.message}</div>`
        : null
    }
    ${
      agent.error
        ? html`<div class="block" id="agent-error">
            <h3>${shown === 'cancelled' ? 'Cancelled' : 'Error'}</h3>
            <div class="error-box" data-state=${shown}><span class="code">${agent.error.code || 'error'}</span>${agent.error.message}</div>
          </div>`
        : null
    }
    ${
      agent.result !== undefined
        ? html`<div class="block result" id="agent-result">
            <h3>Result</h3>
            <pre>${pretty(agent.result)}</pre>
          </div>`
        : null
    }
    <div class="block">
      <h3>Messages (${messages.length})</h3>
      ${
        messages.length
          ? html`<div class="messages" id="agent-messages">${renderMessages(messages)}</div>`
          : html`<div class="muted">No messages yet.</div>`
      }
    </div>
  `
}

/** @param {readonly ChatMessage[]} messages */
function renderMessages(messages) {
  // A tool's result names its call; the call, earlier in the list, names the tool.
  /** @type {Map<string, string>} */
  const toolNames = new Map()
  for (const message of messages) {
    if (message.role === 'assistant')
      for (const call of message.toolCalls ?? []) toolNames.set(call.id, call.name)
  }
  return messages.map(
    (message, index) =>
      html`<${Message} key=${index} message=${message} index=${index} toolNames=${toolNames} />`,
  )
}

/** @param {{ message: ChatMessage, index: number, toolNames: Map<string, string> }} props */
function Message({ message, index, toolNames }) {
  const { role, content } = message
  const label = html`<span>${role}</span><span class="muted">#${index + 1}</span>`
  if (message.role === 'system') {
    return html`
      <div class="message" data-role=${role}>
        <div class="role">${label}</div>
        <details><summary>system prompt (${content.length} chars)</summary><pre>${content}</pre></details>
      </div>
    `
  }
  const calls = message.role === 'assistant' ? (message.toolCalls ?? []) : []
  const name = message.role === 'tool' ? toolNames.get(message.toolCallId) : undefined
  return html`
    <div class="message" data-role=${role}>
      <div class="role">
        ${label}
        ${
          message.role === 'tool'
            ? html`<span class="muted">${name ? `${name} ` : ''}result · ${message.toolCallId}</span>`
            : null
        }
      </div>
      ${
        content.trim() !== '' || calls.length === 0
          ? html`<pre class="content">${role === 'user' ? content : prettyText(content)}</pre>`
          : null
      }
      ${calls.map(
        (call) => html`
          <div key=${call.id} class="tool-call" data-tool=${call.name}>
            <div class="call-name">→ ${call.name}<span class="muted"> ${call.id}</span></div>
            <pre>${prettyText(typeof call.arguments === 'string' ? call.arguments : pretty(call.arguments))}</pre>
          </div>
        `,
      )}
    </div>
  `
}
