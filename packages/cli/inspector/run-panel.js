// @ts-check
// The selected run: its header, its agent tree, and a timeline with one bar per agent, so agents
// that ran at the same time are seen side by side.
import { formatDuration, formatTick, formatTime, pretty, tickValues } from './format.js'
import { html, onEnterOrSpace } from './html.js'
import { awaitingKind, navigate, shownState, state } from './store.js'

/** @typedef {import('./api.js').AgentSummary} AgentSummary */
/** @typedef {import('./api.js').RunRecord} RunRecord */
/** @typedef {{ agent: AgentSummary, level: number }} Row */

/** @param {{ now: number }} props */
export function RunPanel({ now }) {
  const run = state.run
  const rows = run ? orderedAgents(state.agents) : []
  let empty = null
  if (!run || rows.length === 0) {
    empty = html`<div class="empty">${state.runId ? (run ? 'No agents yet.' : '') : 'No run selected.'}</div>`
  }
  return html`
    <section id="center" aria-label="Run">
      <div id="run-header"><${RunHeader} now=${now} /></div>
      <div>
        <h2>Agents</h2>
        <div class="scroll">
          <div id="tree" role="tree" aria-label="Agent tree">
            ${empty ?? rows.map((row) => html`<${TreeNode} key=${row.agent.id} row=${row} now=${now} />`)}
          </div>
        </div>
      </div>
      <div>
        <h2>Timeline</h2>
        <div class="scroll">
          <div id="timeline">${run && !empty ? html`<${Timeline} run=${run} rows=${rows} now=${now} />` : null}</div>
        </div>
      </div>
    </section>
  `
}

/** @param {{ now: number }} props */
function RunHeader({ now }) {
  const { run, runId, runError, agents } = state
  if (!runId) return html`<div class="empty">Select a run on the left.</div>`
  if (runError && !run) return html`<div class="empty error-text">Run ${runId}: ${runError}</div>`
  if (!run) return html`<div class="empty">Loading run ${runId}…</div>`
  const settled = run.status !== 'running'
  // Wall time leaves out the time the run was stopped (detached, or its server down), as metrics do.
  const end = settled ? run.updatedAt : (run.detachedAt ?? now)
  const duration = end - run.createdAt - (run.stoppedMs ?? 0)
  const waiting = agents.filter((agent) => awaitingKind(agent)).length
  return html`
    <div class="run-title">
      <strong>${run.id}</strong>
      <span class="pill" data-state=${run.status}>${run.status}</span>
      ${runError ? html`<span class="error-text">(refresh failed: ${runError})</span>` : null}
    </div>
    <div class="run-facts">
      <span>agent <strong>${run.agent}</strong></span>
      <span>created ${formatTime(run.createdAt)}</span>
      <span data-run-duration>${settled ? 'took' : 'running for'} ${formatDuration(duration)}</span>
      <span>${agents.length} agent${agents.length === 1 ? '' : 's'}</span>
      ${
        waiting > 0
          ? html`<span class="needs-you" data-waiting-count=${waiting}>
              ${waiting} agent${waiting === 1 ? ' needs' : 's need'} you
            </span>`
          : null
      }
    </div>
    <div class="task">${run.task}</div>
    ${
      run.error
        ? html`<div class="error-box header-extra" data-state=${run.status}>
            <span class="code">${run.error.code || run.error.name || 'error'}</span>${run.error.message}
          </div>`
        : run.status === 'completed' && run.result !== undefined
          ? html`<details class="result header-extra">
              <summary>Run result</summary>
              <pre>${pretty(run.result)}</pre>
            </details>`
          : null
    }
  `
}

/** @param {{ row: Row, now: number }} props */
function TreeNode({ row: { agent, level }, now }) {
  const open = () => navigate(state.runId, agent.id)
  const waiting = awaitingKind(agent)
  const shown = shownState(agent)
  const hint =
    waiting === 'approval'
      ? `waits for your approval of ${agent.awaiting?.tool}`
      : waiting === 'input'
        ? `waits for your answer: ${agent.awaiting?.prompt}`
        : undefined
  return html`
    <div
      class="node"
      role="treeitem"
      tabindex="0"
      data-agent-id=${agent.id}
      data-state=${shown}
      data-awaiting=${waiting ?? undefined}
      aria-level=${level + 1}
      aria-selected=${agent.id === state.agentId ? 'true' : 'false'}
      title=${agent.task}
      onClick=${open}
      onKeyDown=${onEnterOrSpace(open)}
    >
      <span class="indent" style=${{ width: `${level * 18}px` }} data-root=${level === 0 ? '' : undefined}></span>
      <span class="dot"></span>
      <span class="name">${agent.name}</span>
      <span class="id">${agent.id === agent.name ? '' : agent.id}</span>
      <span class="pill">${shown}</span>
      <span class="needs-you" title=${hint}>needs you</span>
      ${
        shown === 'idle' && agent.dependsOn
          ? html`<span class="after">after ${agent.dependsOn.map(ownId).join(', ')}</span>`
          : ''
      }
      <span class="turns">${agent.turns} turn${agent.turns === 1 ? '' : 's'}</span>
      <span class="time">${formatDuration(agentEnd(agent, now) - agent.startedAt)}</span>
    </div>
  `
}

/** @param {{ run: RunRecord, rows: Row[], now: number }} props */
function Timeline({ run, rows, now }) {
  const start = Math.min(run.createdAt, ...state.agents.map((a) => a.startedAt || run.createdAt))
  const span = Math.max(spanEnd(now) - start, 1)
  /** @param {number} t */
  const pct = (t) => `${((t / span) * 100).toFixed(3)}%`
  const ticks = tickValues(span)
  return html`
    <div class="tl-axis">
      ${ticks.map(
        (t) => html`<div key=${t} class="tick" style=${{ left: pct(t) }}>
          <span class="tick-label">${formatTick(t, ticks[1] || t)}</span>
        </div>`,
      )}
    </div>
    <div class="tl-grid">${ticks.map((t) => html`<div key=${t} class="tick" style=${{ left: pct(t) }}></div>`)}</div>
    <div class="tl-rows">
      ${rows.map(({ agent, level }) => {
        const open = () => navigate(state.runId, agent.id)
        const from = agent.startedAt || start
        const to = agentEnd(agent, now)
        return html`
          <div
            key=${agent.id}
            class="tl-row"
            tabindex="0"
            data-row-agent=${agent.id}
            aria-selected=${agent.id === state.agentId ? 'true' : 'false'}
            onClick=${open}
            onKeyDown=${onEnterOrSpace(open)}
          >
            <div class="tl-label" style=${{ paddingLeft: `${12 + level * 14}px` }} title=${`${agent.name} (${agent.id})`}>
              ${ownId(agent.id)}
            </div>
            <div class="tl-track">
              <div
                class="bar"
                data-agent-id=${agent.id}
                data-state=${shownState(agent)}
                style=${{ left: pct(from - start), width: pct(to - from) }}
                title=${`${agent.name} (${agent.id}) ${shownState(agent)}\n+${formatDuration(from - start)} → ${formatDuration(to - from)}`}
              >
                <span class="bar-text">${formatDuration(to - from)}</span>
              </div>
            </div>
          </div>
        `
      })}
    </div>
  `
}

/**
 * Agents in depth-first order (children by start time), with their nesting level.
 * @param {AgentSummary[]} agents
 * @returns {Row[]}
 */
function orderedAgents(agents) {
  const byId = new Map(agents.map((agent) => [agent.id, agent]))
  /** @type {Map<string, AgentSummary[]>} */
  const children = new Map()
  /** @type {AgentSummary[]} */
  const roots = []
  for (const agent of agents) {
    const parentId = agent.parentId
    if (parentId && byId.has(parentId) && parentId !== agent.id) {
      const siblings = children.get(parentId) ?? []
      siblings.push(agent)
      children.set(parentId, siblings)
    } else roots.push(agent)
  }
  /** @param {AgentSummary} a @param {AgentSummary} b */
  const byStart = (a, b) => a.startedAt - b.startedAt || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)
  /** @type {Row[]} */
  const out = []
  const seen = new Set()
  /** @param {AgentSummary} agent @param {number} level */
  const visit = (agent, level) => {
    if (seen.has(agent.id)) return
    seen.add(agent.id)
    out.push({ agent, level })
    for (const kid of (children.get(agent.id) ?? []).sort(byStart)) visit(kid, level + 1)
  }
  for (const root of roots.sort(byStart)) visit(root, 0)
  return out
}

/** The end of the run's time span: now while it runs, its last known time once settled. @param {number} now */
function spanEnd(now) {
  const run = state.run
  let end = run ? run.createdAt : now
  for (const agent of state.agents) end = Math.max(end, agent.startedAt || 0, agent.endedAt || 0)
  if (!run || run.status === 'running') return Math.max(end, now)
  return Math.max(end, run.updatedAt || 0)
}

/** @param {AgentSummary} agent @param {number} now */
function agentEnd(agent, now) {
  if (agent.endedAt != null) return agent.endedAt
  const run = state.run
  if (run && run.status !== 'running') return Math.max(agent.startedAt, run.updatedAt || agent.startedAt)
  return Math.max(agent.startedAt, now)
}

/**
 * The agent's own part of its id: the indentation shows its parents, and deep siblings' full ids
 * share a start the label's width cuts them to.
 * @param {string} id
 */
function ownId(id) {
  return id.slice(id.lastIndexOf('.') + 1)
}
