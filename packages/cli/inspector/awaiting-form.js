// @ts-check
// What an agent waits on a person for, and the buttons to give it: approve or reject a tool call,
// or answer a question.
import { useEffect, useRef, useState } from 'preact/hooks'
import { parseAnswer, pretty } from './format.js'
import { html } from './html.js'
import { answerAgent } from './store.js'

/** @typedef {NonNullable<import('./api.js').AgentSummary['awaiting']>} Awaiting */

/** How long a sent answer keeps the buttons disabled if the agent has not moved on meanwhile. */
const retryAfterMs = 10_000

/** @param {{ runId: string, agentId: string, waiting: Awaiting }} props */
export function AwaitingForm({ runId, agentId, waiting }) {
  const [busy, setBusy] = useState(false)
  const [sent, setSent] = useState(false)
  const [hint, setHint] = useState('')
  const reason = useRef(/** @type {HTMLInputElement | null} */ (null))
  const answer = useRef(/** @type {HTMLInputElement | null} */ (null))
  // The wait may end (and this form go) while a request is out: its outcome then changes nothing here.
  const mounted = useRef(true)
  useEffect(
    () => () => {
      mounted.current = false
    },
    [],
  )
  useEffect(() => {
    if (!sent) return
    const timer = setTimeout(() => {
      setSent(false)
      setHint('')
    }, retryAfterMs)
    return () => clearTimeout(timer)
  }, [sent])

  // Approvals go to the agent's own path: call ids (`call_0`) repeat across agents.
  const agentPath = `api/runs/${encodeURIComponent(runId)}/agents/${encodeURIComponent(agentId)}`
  /**
   * @param {string} label
   * @param {string} path
   * @param {unknown} body
   */
  const send = async (label, path, body) => {
    if (busy || sent) return
    setBusy(true)
    setHint(`${label}: sending…`)
    const ok = await answerAgent(agentId, label, path, body)
    if (!mounted.current) return
    setBusy(false)
    setSent(ok)
    setHint(ok ? 'Sent; waiting for the agent to go on…' : '')
  }
  const approve = () => send('Approve', `${agentPath}/approve`, { callId: waiting.callId })
  const reject = () => {
    const text = reason.current?.value.trim()
    send('Reject', `${agentPath}/reject`, { callId: waiting.callId, ...(text && { reason: text }) })
  }
  /** @param {Event} event */
  const submitAnswer = (event) => {
    event.preventDefault()
    const text = answer.current?.value ?? ''
    // A stray Enter must not answer the agent with nothing: an answer cannot be taken back.
    if (text.trim() === '') return setHint('Type an answer first (text, or JSON).')
    send('Answer', `${agentPath}/resume`, { payload: parseAnswer(text) })
  }
  const disabled = busy || sent

  if (waiting.kind === 'approval') {
    /** @param {KeyboardEvent} event */
    const onReasonKey = (event) => {
      if (event.key !== 'Enter') return
      event.preventDefault()
      reject()
    }
    return html`
      <div class="awaiting" id="agent-awaiting" data-awaiting="approval" data-call-id=${waiting.callId}>
        <h3>Needs your approval</h3>
        <p class="prompt">The agent wants to call <span class="tool-name">${waiting.tool}</span></p>
        <pre class="args" data-field="args">${pretty(waiting.args)}</pre>
        <div class="controls">
          <button type="button" class="act" data-action="approve" disabled=${disabled} onClick=${approve}>
            Approve
          </button>
          <input
            ref=${reason}
            type="text"
            class="field"
            data-field="reason"
            placeholder="Reason for rejecting (optional)"
            aria-label="Reason for rejecting"
            onKeyDown=${onReasonKey}
          />
          <button type="button" class="act" data-action="reject" disabled=${disabled} onClick=${reject}>
            Reject
          </button>
        </div>
        <div class="hint" role="status">${hint}</div>
      </div>
    `
  }
  return html`
    <div class="awaiting" id="agent-awaiting" data-awaiting="input" data-call-id=${waiting.callId}>
      <h3>Waiting for your answer</h3>
      <p class="prompt">${waiting.prompt}</p>
      <div class="muted asked-by">asked by <span class="tool-name">${waiting.tool}</span></div>
      <form class="controls" autocomplete="off" onSubmit=${submitAnswer}>
        <input
          ref=${answer}
          type="text"
          class="field"
          data-field="answer"
          placeholder="Your answer (JSON is sent parsed)"
          aria-label="Your answer"
        />
        <button type="submit" class="act" data-action="answer" disabled=${disabled}>Answer</button>
      </form>
      <div class="hint" role="status">${hint}</div>
    </div>
  `
}
