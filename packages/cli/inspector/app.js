// @ts-check
import { useEffect, useRef, useState } from 'preact/hooks'
import { AgentDetail } from './agent-detail.js'
import { html } from './html.js'
import { RunPanel } from './run-panel.js'
import { RunsList } from './runs-list.js'
import { startRun, state, subscribe } from './store.js'

const connectionText = { connecting: 'connecting…', open: 'live', closed: 'disconnected, retrying…' }

export function App() {
  const [, setVersion] = useState(0)
  useEffect(() => subscribe(() => setVersion((version) => version + 1)), [])
  // The clock stops while the server is out of reach: what the page shows is as of its last word.
  const now = useClock(state.run?.status === 'running' && state.connection === 'open')
  return html`
    ${state.signInNeeded ? html`<${SignInNeeded} message=${state.signInNeeded} />` : null}
    <header>
      <h1>Cohort inspector</h1>
      ${
        state.signInNeeded
          ? html`<span id="connection" data-state="signed-out">signed out</span>`
          : html`<span id="connection" data-state=${state.connection}>${connectionText[state.connection]}</span>`
      }
      <${NewRunForm} />
    </header>
    <main>
      <${RunsList} />
      <${RunPanel} now=${now} />
      <${AgentDetail} now=${now} />
    </main>
  `
}

/**
 * The time at this render; while `running`, the page re-renders now and then so clocks and bars
 * advance without refetching: every 250 ms, or less often when a render costs more than a fifth of
 * that (a run of hundreds of agents on a slow machine), so the clock alone does not keep the page
 * busy; at least every 5 s, so it never looks stopped.
 * @param {boolean} running
 */
function useClock(running) {
  const [, setTick] = useState(0)
  useEffect(() => {
    if (!running) return
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    let timer
    let stopped = false
    const tick = () => {
      const started = performance.now()
      setTick((tick) => tick + 1)
      // A task queued from the next frame runs once that frame is rendered, styled and laid out.
      requestAnimationFrame(() => {
        timer = setTimeout(() => {
          if (stopped) return
          const cost = performance.now() - started
          timer = setTimeout(tick, Math.min(5_000, Math.max(250, cost * 5)))
        })
      })
    }
    timer = setTimeout(tick, 250)
    return () => {
      stopped = true
      clearTimeout(timer)
    }
  }, [running])
  return Date.now()
}

function NewRunForm() {
  const [error, setError] = useState('')
  const agent = useRef(/** @type {HTMLInputElement | null} */ (null))
  const task = useRef(/** @type {HTMLInputElement | null} */ (null))
  /** @param {Event} event */
  const submit = async (event) => {
    event.preventDefault()
    setError('')
    const text = task.current?.value.trim() ?? ''
    if (!text) {
      setError('the task is empty: say what the run should do')
      return
    }
    try {
      await startRun(agent.current?.value.trim() ?? '', text)
      if (task.current) task.current.value = ''
    } catch (failure) {
      setError(failure instanceof Error ? failure.message : String(failure))
    }
  }
  return html`
    <form id="new-run" autocomplete="off" onSubmit=${submit}>
      <input ref=${agent} name="agent" placeholder="agent (default)" aria-label="Agent" />
      <input ref=${task} name="task" placeholder="Task for a new run" aria-label="Task" required />
      <button type="submit">Start run</button>
      <span id="new-run-error" role="alert" title=${error}>${error}</span>
    </form>
  `
}

/** @param {{ message: string }} props */
function SignInNeeded({ message }) {
  return html`
    <div id="auth-needed" role="alert">
      ${message}. The link looks like <code>${location.origin}/?token=…</code>; opening it signs this
      browser in.
    </div>
  `
}
