// @ts-check
// Calls to the server's API. The page is signed in by an HttpOnly cookie the server set when it was
// opened with ?token=, which the browser sends with each same-origin request; no script sees the token.

/** @typedef {import('../src/server/api-shapes.js').RunRecordView} RunRecord */
/** @typedef {import('../src/server/api-shapes.js').RunSummaryView} RunSummary */
/** @typedef {import('../src/server/api-shapes.js').AgentSummaryView} AgentSummary */
/** @typedef {import('../src/server/api-shapes.js').ChatMessageView} ChatMessage */
/** @typedef {import('../src/server/api-shapes.js').RunViewBody} RunView */
/** @typedef {import('../src/server/api-shapes.js').AgentDetailBody} AgentDetail */
/** @typedef {import('../src/server/api-shapes.js').RunListBody} RunList */

/** A refusal from the server, with its status and its `{ error }` message; status 0: no answer came. */
export class ApiError extends Error {
  /**
   * @param {number} status
   * @param {string} message
   */
  constructor(status, message) {
    super(message)
    this.status = status
  }
}

/**
 * @param {string} path relative to the page (`api/runs`), so the page also works under a proxy's prefix
 * @param {RequestInit} [init]
 * @returns {Promise<unknown>}
 */
export async function api(path, init) {
  /** @type {Response} */
  let response
  try {
    response = await fetch(path, { ...init, headers: { accept: 'application/json', ...init?.headers } })
  } catch {
    // The browser says only "Failed to fetch": the server is down, restarting, or out of reach.
    throw new ApiError(
      0,
      'the server did not answer (stopped or restarting?); try again once the page says live',
    )
  }
  /** @type {unknown} */
  let body = null
  try {
    body = await response.json()
  } catch {
    body = null
  }
  if (!response.ok) {
    const message = body && typeof body === 'object' && 'error' in body ? String(body.error) : ''
    throw new ApiError(response.status, message || `HTTP ${response.status}`)
  }
  return body
}

/**
 * @param {string} path
 * @param {unknown} body
 */
export function post(path, body) {
  return api(path, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  })
}

/** The address of the event socket, beside the page. */
export function eventsUrl() {
  const url = new URL('api/events', location.href)
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:'
  url.search = ''
  url.hash = ''
  return url.href
}
