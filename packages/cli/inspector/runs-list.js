// @ts-check
import { formatTime } from './format.js'
import { html, onEnterOrSpace } from './html.js'
import { navigate, runsShown, state } from './store.js'

/** @typedef {import('./api.js').RunSummary} RunSummary */

export function RunsList() {
  let empty = null
  if (state.runsError) {
    empty = html`<div id="runs-empty" class="empty error-text">Could not load runs: ${state.runsError}</div>`
  } else if (!state.runsLoaded) {
    empty = html`<div id="runs-empty" class="empty">Loading runs…</div>`
  } else if (state.runs.length === 0) {
    empty = html`<div id="runs-empty" class="empty">No runs yet. Start one with the form above.</div>`
  }
  const waiting = state.runs.filter((run) => run.agentsAwaiting).length
  return html`
    <section aria-label="Runs">
      <h2>
        Runs
        ${
          waiting > 0
            ? html` <span id="runs-waiting" class="needs-you" data-waiting-runs=${waiting}>
                ${waiting} run${waiting === 1 ? ' needs' : 's need'} you
              </span>`
            : null
        }
      </h2>
      <div class="scroll">
        ${empty}
        <ul id="runs">
          ${state.runs.map((run) => html`<${RunItem} key=${run.id} run=${run} current=${run.id === state.runId} />`)}
        </ul>
        ${
          state.runs.length >= runsShown
            ? html`<div id="runs-more" class="empty">The newest ${runsShown} runs. An older one opens at
                <code>#run=<i>its id</i></code>; <code>cohort ls</code> lists them all.</div>`
            : null
        }
      </div>
    </section>
  `
}

/** @param {{ run: RunSummary, current: boolean }} props */
function RunItem({ run, current }) {
  const open = () => navigate(run.id, null)
  const waiting = run.agentsAwaiting ?? 0
  return html`
    <li
      tabindex="0"
      data-run-id=${run.id}
      data-state=${run.status}
      data-awaiting=${waiting > 0 ? waiting : undefined}
      aria-current=${current ? 'true' : undefined}
      title=${run.task}
      onClick=${open}
      onKeyDown=${onEnterOrSpace(open)}
    >
      <div class="run-line">
        <span class="run-id">${run.id}</span>
        ${
          waiting > 0
            ? html`<span
                class="needs-you"
                data-waiting-count=${waiting}
                title=${`${waiting} agent${waiting === 1 ? ' waits' : 's wait'} for your approval or answer`}
              >
                needs you${waiting > 1 ? ` (${waiting})` : ''}
              </span>`
            : null
        }
        <span class="pill" data-state=${run.status}>${run.status}</span>
      </div>
      <div class="run-meta">
        <span class="run-agent">${run.agent}</span>
        <span class="run-created">${formatTime(run.createdAt)}</span>
      </div>
      <div class="run-task">${run.task}</div>
    </li>
  `
}
