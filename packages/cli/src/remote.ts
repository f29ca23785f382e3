import { type Awaiting, assertRunId, CohortError, InvalidInputError, RunNotFoundError } from '@cohort/core'
import type { Output } from './commands.js'
import { refuseAnswerToApproval } from './waiting.js'

/** A `cohort serve` to send a control to, instead of continuing the run in this process. */
export interface ServerTarget {
  /** Its address, or the inspector link it printed (whose token is then used). */
  server: string
  token?: string
}

/** What a person can tell a run that a server hosts. */
export type Control =
  | { kind: 'approve'; runId: string; agentId: string; callId: string }
  | { kind: 'reject'; runId: string; agentId: string; callId: string; reason: string }
  | { kind: 'answer'; runId: string; agentId: string; payload: unknown }
  | { kind: 'cancel'; runId: string }

/**
 * Sends the control to the server that hosts the run: two processes must not both continue one
 * run, so with a server up this is how `approve`, `reject`, `answer` and `cancel` reach it.
 */
export async function controlOnServer(control: Control, target: ServerTarget, io: Output): Promise<number> {
  assertRunId(control.runId)
  const run = `api/runs/${encodeURIComponent(control.runId)}`
  const agent = (agentId: string) => `${run}/agents/${encodeURIComponent(agentId)}`
  switch (control.kind) {
    case 'approve':
      await post(target, control.runId, `${agent(control.agentId)}/approve`, { callId: control.callId })
      io.out.write(
        `Approved call ${control.callId} of ${control.agentId} in run ${control.runId}; the server runs it.\n`,
      )
      break
    case 'reject':
      await post(target, control.runId, `${agent(control.agentId)}/reject`, {
        callId: control.callId,
        reason: control.reason,
      })
      io.out.write(
        `Rejected call ${control.callId} of ${control.agentId} in run ${control.runId}; the agent is told why.\n`,
      )
      break
    case 'answer': {
      // Read first: an agent that waits for an approval is not answered (the server's resume would approve).
      const { agent: waiting } = (await request(target, control.runId, 'GET', agent(control.agentId))) as {
        agent: { awaiting?: Awaiting }
      }
      refuseAnswerToApproval(control.runId, control.agentId, waiting.awaiting)
      await post(target, control.runId, `${agent(control.agentId)}/resume`, { payload: control.payload })
      io.out.write(`Answered ${control.agentId} of run ${control.runId}.\n`)
      break
    }
    case 'cancel': {
      // A run that has already ended is left as it is, as `cohort cancel` does without a server.
      const { run: stored } = (await request(target, control.runId, 'GET', run)) as {
        run: { status: string }
      }
      if (stored.status !== 'running') {
        io.out.write(`Run ${control.runId} is already ${stored.status}.\n`)
        break
      }
      await post(target, control.runId, `${run}/cancel`)
      io.out.write(`Run ${control.runId} cancelled.\n`)
      break
    }
  }
  return 0
}

async function post(target: ServerTarget, runId: string, path: string, body?: unknown): Promise<void> {
  await request(target, runId, 'POST', path, body)
}

/** One call to the server's API: its JSON answer, or a clear error for each way it refuses. */
async function request(
  target: ServerTarget,
  runId: string,
  method: 'GET' | 'POST',
  path: string,
  body?: unknown,
): Promise<unknown> {
  const { base, token } = resolveTarget(target)
  const url = new URL(path, base)
  let response: Response
  try {
    response = await fetch(url, {
      method,
      headers: {
        ...(token !== undefined && { authorization: `Bearer ${token}` }),
        ...(body !== undefined && { 'content-type': 'application/json' }),
      },
      ...(body !== undefined && { body: JSON.stringify(body) }),
    })
  } catch (error) {
    const reason = (error as Error & { cause?: Error }).cause?.message ?? (error as Error).message
    throw new InvalidInputError(`cannot reach the server at ${base}: ${reason}`)
  }
  const answer = (await response.json().catch(() => ({}))) as { error?: unknown }
  if (response.ok) return answer
  const message = typeof answer.error === 'string' ? answer.error : `HTTP ${response.status}`
  if (response.status === 401) {
    throw new InvalidInputError(
      `the server at ${base} refused: ${message}. Give its token with --token or COHORT_TOKEN, or pass the link it printed as --server`,
    )
  }
  // The run, or an agent of it, that the server does not have.
  if (response.status === 404) throw new RunNotFoundError(runId, message)
  if (response.status < 500) throw new InvalidInputError(`the server at ${base} refused: ${message}`)
  throw new CohortError('SERVER_ERROR', `the server at ${base} failed: ${message}`)
}

/** `http://host:port/`, and the token: given, or from the link's `?token=`. */
function resolveTarget(target: ServerTarget): { base: string; token: string | undefined } {
  let url: URL
  try {
    url = new URL(target.server)
  } catch {
    throw new InvalidInputError(
      `--server "${target.server}" is not a URL; expected e.g. http://127.0.0.1:4000`,
    )
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new InvalidInputError(`--server "${target.server}" is not an http(s) URL`)
  }
  const token = target.token ?? url.searchParams.get('token') ?? undefined
  url.search = ''
  url.hash = ''
  if (!url.pathname.endsWith('/')) url.pathname += '/'
  return { base: url.href, token }
}
