// @ts-check
// What the page knows and how it learns it: the runs list, the selected run and agent (from the
// address's #run=…&agent=…), refreshed when the event socket says something changed. Components
// read `state` and re-render when `subscribe` tells them to; nothing else writes it.
import { ApiError, api, eventsUrl, post } from './api.js'
import { throttled } from './throttle.js'

/** @typedef {import('./api.js').RunRecord} RunRecord */
/** @typedef {import('./api.js').RunSummary} RunSummary */
/** @typedef {import('./api.js').AgentSummary} AgentSummary */
/** @typedef {import('./api.js').AgentDetail} AgentDetail */
/** @typedef {import('./api.js').RunView} RunView */
/** @typedef {import('./api.js').RunList} RunList */
/** @typedef {{ runId: string, agentId: string, message: string }} ActionError */

export const state = {
  /** @type {RunSummary[]} */
  runs: [],
  runsLoaded: false,
  /** @type {string | null} */
  runsError: null,
  /** @type {string | null} */
  runId: null,
  /** @type {RunRecord | null} */
  run: null,
  /** @type {AgentSummary[]} */
  agents: [],
  /** @type {string | null} */
  runError: null,
  /** @type {string | null} */
  agentId: null,
  /** @type {AgentDetail | null} */
  detail: null,
  /** @type {string | null} */
  detailError: null,
  /** @type {string | null} */
  detailSignature: null,
  /** The last failed answer to a waiting agent. @type {ActionError | null} */
  actionError: null,
  /** @type {'connecting' | 'open' | 'closed'} */
  connection: 'connecting',
  /** Set when the server refuses the page's requests for want of its token. @type {string | null} */
  signInNeeded: null,
}

/** @type {Set<() => void>} */
const listeners = new Set()

/** @param {() => void} listener */
export function subscribe(listener) {
  listeners.add(listener)
  return () => {
    listeners.delete(listener)
  }
}

function changed() {
  for (const listener of listeners) listener()
}

/** What an agent waits on a person for, or null. @param {AgentSummary | null | undefined} agent */
export function awaitingKind(agent) {
  return agent && agent.status === 'suspended' && agent.awaiting ? agent.awaiting.kind : null
}

/**
 * The state the page shows for an agent: its status, except that an agent ended by a cancellation
 * (its run's, or its parent's end) reads 'cancelled', not 'failed'. The API keeps `failed` with the
 * error code `CANCELLED`, as the run's metrics count it.
 * @param {AgentSummary} agent
 */
export function shownState(agent) {
  return agent.status === 'failed' && agent.error?.code === 'CANCELLED' ? 'cancelled' : agent.status
}

/** Changes whenever the agent's detail is worth fetching again. @param {AgentSummary} agent */
function agentSignature(agent) {
  const waiting = agent.awaiting
  return `${agent.status}|${agent.turns}|${agent.endedAt}|${waiting?.kind}|${waiting?.callId}|${waiting?.key}`
}

/** @param {unknown} error */
function messageOf(error) {
  if (error instanceof ApiError && error.status === 401) state.signInNeeded = error.message
  return error instanceof Error ? error.message : String(error)
}

// ---------- Loading ----------

/** The newest runs the list shows; an older one opens by its address (`#run=<id>`). */
export const runsShown = 100

export const refreshRuns = throttled(async () => {
  try {
    const body = /** @type {RunList} */ (await api(`api/runs?limit=${runsShown}`))
    state.runs = body.runs.slice().sort((a, b) => b.createdAt - a.createdAt)
    state.runsError = null
    state.signInNeeded = null
  } catch (error) {
    state.runsError = messageOf(error)
  }
  state.runsLoaded = true
  changed()
}, 300)

export const refreshRun = throttled(async () => {
  const runId = state.runId
  if (!runId) return
  try {
    const body = /** @type {RunView} */ (await api(`api/runs/${encodeURIComponent(runId)}`))
    if (state.runId !== runId) return
    state.run = body.run
    state.agents = body.agents
    state.runError = null
    // Keep the runs list in step with what we just learned about this run.
    const summary = { ...body.run, agentsAwaiting: body.agents.filter((agent) => awaitingKind(agent)).length }
    const index = state.runs.findIndex((run) => run.id === runId)
    if (index >= 0) state.runs[index] = summary
    else state.runs.unshift(summary)
  } catch (error) {
    if (state.runId !== runId) return
    state.runError = messageOf(error)
  }
  changed()
  const agent = state.agents.find((a) => a.id === state.agentId)
  if (agent && agentSignature(agent) !== state.detailSignature) refreshDetail()
}, 150)

export const refreshDetail = throttled(async () => {
  const { runId, agentId } = state
  if (!runId || !agentId) return
  try {
    const path = `api/runs/${encodeURIComponent(runId)}/agents/${encodeURIComponent(agentId)}`
    const body = /** @type {AgentDetail} */ (await api(path))
    if (state.runId !== runId || state.agentId !== agentId) return
    state.detail = body
    state.detailError = null
    state.detailSignature = agentSignature(body.agent)
  } catch (error) {
    if (state.runId !== runId || state.agentId !== agentId) return
    state.detailError = messageOf(error)
  }
  changed()
}, 150)

// ---------- Navigation (#run=<id>&agent=<id>) ----------

/**
 * @param {string | null} runId
 * @param {string | null} agentId
 */
export function navigate(runId, agentId) {
  const params = new URLSearchParams()
  if (runId) params.set('run', runId)
  if (runId && agentId) params.set('agent', agentId)
  const hash = `#${params.toString()}`
  if (location.hash !== hash) history.pushState(null, '', hash)
  applyHash()
}

export function applyHash() {
  const params = new URLSearchParams(location.hash.replace(/^#/, ''))
  const runId = params.get('run') || null
  // An agent is shown within its run: an address with an agent and no run shows neither.
  const agentId = (runId && params.get('agent')) || null
  if (runId !== state.runId) {
    Object.assign(state, { runId, run: null, agents: [], runError: null, agentId: null })
    if (runId) refreshRun(true)
  }
  if (agentId !== state.agentId) {
    Object.assign(state, {
      agentId,
      detail: null,
      detailError: null,
      detailSignature: null,
      actionError: null,
    })
    if (agentId) refreshDetail(true)
  }
  changed()
}

// ---------- Acting ----------

/**
 * Starts a run; its id, or the server's refusal as an error.
 * @param {string} agent
 * @param {string} task
 */
export async function startRun(agent, task) {
  const body = /** @type {{ runId: string }} */ (await post('api/runs', agent ? { agent, task } : { task }))
  refreshRuns(true)
  navigate(body.runId, null)
}

/**
 * Answers a waiting agent (approve, reject, or an input); true when the server took it. A refusal is
 * kept as the agent's action error, which outlives the form (the wait may change meanwhile: someone
 * else answered, and the error says why this answer came too late).
 * @param {string} agentId
 * @param {string} label what the person did, for the error: 'Approve', 'Reject', 'Answer'
 * @param {string} path
 * @param {unknown} body
 */
export async function answerAgent(agentId, label, path, body) {
  const runId = state.runId
  if (!runId) return false
  if (state.actionError) {
    state.actionError = null
    changed()
  }
  try {
    await post(path, body)
    if (state.runId === runId) {
      refreshRun(true)
      refreshDetail(true)
    }
    return true
  } catch (error) {
    if (state.runId === runId && state.agentId === agentId) {
      state.actionError = { runId, agentId, message: `${label} failed: ${messageOf(error)}` }
      changed()
    }
    return false
  }
}

// ---------- Live updates ----------

let reconnectDelay = 500
/** @type {WebSocket | null} */
let socket = null

/** Listens to the server's events, and reconnects with a growing delay when the socket drops. */
export function connect() {
  // Signed out, every attempt is refused (401) until the sign-in link reloads the page.
  if (state.signInNeeded) return
  state.connection = 'connecting'
  changed()
  try {
    socket = new WebSocket(eventsUrl())
  } catch (error) {
    console.error(error)
    scheduleReconnect()
    return
  }
  socket.addEventListener('open', () => {
    reconnectDelay = 500
    state.connection = 'open'
    // What failed while the server was out of reach is told again by what the page now reads.
    state.actionError = null
    changed()
    // Catch up on whatever happened while we were not listening.
    refreshRuns(true)
    if (state.runId) refreshRun(true)
    if (state.agentId) refreshDetail(true)
  })
  socket.addEventListener('message', (message) => {
    let data
    try {
      data = JSON.parse(String(message.data))
    } catch {
      return
    }
    if (data && typeof data === 'object' && data.event) onEvent(String(data.runId), data.event)
  })
  // 'error' is always followed by 'close', which reconnects.
  socket.addEventListener('close', () => {
    socket = null
    state.connection = 'closed'
    changed()
    scheduleReconnect()
  })
}

function scheduleReconnect() {
  if (state.signInNeeded) return
  setTimeout(connect, reconnectDelay)
  reconnectDelay = Math.min(reconnectDelay * 2, 5000)
}

/**
 * Whether an agent of the run may have begun or stopped waiting on a person: a wait on its
 * children, or a run the list says waits on nobody, needs no new list.
 * @param {string} runId
 * @param {string} type
 * @param {{ awaiting?: unknown }} event
 */
function waitMayChange(runId, type, event) {
  if (type === 'agent.suspended') return Boolean(event.awaiting)
  if (type !== 'agent.resumed' && type !== 'agent.failed') return false
  return state.runs.find((run) => run.id === runId)?.agentsAwaiting !== 0
}

/**
 * @param {string} runId
 * @param {{ type?: unknown, agentId?: unknown, awaiting?: unknown }} event
 */
function onEvent(runId, event) {
  const type = String(event.type || '')
  // A run's status, and whether it waits on a person, are in the list.
  if (
    type.startsWith('run.') ||
    waitMayChange(runId, type, event) ||
    !state.runs.some((run) => run.id === runId)
  )
    refreshRuns()
  if (runId !== state.runId || type === 'model.token') return
  refreshRun()
  if (event.agentId && event.agentId === state.agentId) refreshDetail()
}

/** Without a socket, polls now and then so the page never goes stale. */
export function pollWhileDisconnected() {
  setInterval(() => {
    if (state.signInNeeded || (socket && socket.readyState === WebSocket.OPEN)) return
    refreshRuns()
    if (state.runId) refreshRun()
  }, 5000)
}
