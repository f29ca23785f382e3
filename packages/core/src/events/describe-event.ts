import type { CohortEvent, PersonAnswer } from './types.js'

export type EventCategory = 'RUN' | 'AGENT' | 'TOOL' | 'LLM'
export type EventTone = 'start' | 'ok' | 'fail' | 'wait' | 'warn' | 'info'

export interface EventLine {
  category: EventCategory
  tone: EventTone
  text: string
}

/**
 * One human line per event. Every event type has a case: the type checker refuses a new type
 * without one. A streamed token's line is for level `debug` only (the logger's `level`).
 */
export function describeEvent(event: CohortEvent): EventLine {
  const line = lineOf(event)
  line.text = printable(line.text)
  return line
}

/**
 * One line a terminal shows as it is: a run's content (a result, an error's message, a reason)
 * is the model's or a caller's, and a newline in it would forge a line of the log, an escape
 * (`\x1b[2J`) clear or recolour the console.
 */
function printable(text: string): string {
  return text
    .replace(lineBreaks, ' ')
    .replace(controlCharacters, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`)
}

const lineBreaks = /\s*[\n\r\v\f\u2028\u2029]+\s*/g
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it finds
const controlCharacters = /[\u0000-\u0008\u000e-\u001f\u007f-\u009f]/g

function lineOf(event: CohortEvent): EventLine {
  switch (event.type) {
    case 'run.started':
      return {
        category: 'RUN',
        tone: 'start',
        text: `run ${event.runId} started: ${event.agent} ← ${short(event.task)}`,
      }
    case 'run.resumed':
      return {
        category: 'RUN',
        tone: 'info',
        text: event.ended
          ? `run ${event.runId} is already ${event.ended}: nothing to resume`
          : `run ${event.runId} resumed with ${event.agents} agents`,
      }
    case 'run.completed':
      return {
        category: 'RUN',
        tone: 'ok',
        text: `run ${event.runId} completed: ${short(value(event.result))}`,
      }
    case 'run.failed':
      return { category: 'RUN', tone: 'fail', text: `run ${event.runId} failed: ${event.error.message}` }
    case 'run.cancelled':
      return { category: 'RUN', tone: 'fail', text: `run ${event.runId} cancelled: ${event.reason}` }
    case 'run.detached':
      return {
        category: 'RUN',
        tone: 'wait',
        text: `run ${event.runId} detached: stored, for resume to continue`,
      }
    case 'agent.started':
      return { category: 'AGENT', tone: 'start', text: `${event.agentId} started: ${short(event.task)}` }
    case 'agent.launched':
      return {
        category: 'AGENT',
        tone: 'info',
        text: `${event.agentId} launched ${event.children.map((c) => `${c.id} (${c.agent})`).join(', ')}`,
      }
    case 'agent.suspended':
      return {
        category: 'AGENT',
        tone: 'wait',
        text: `${event.agentId} suspended, ${waitsFor(event)}`,
      }
    case 'agent.resumed':
      return {
        category: 'AGENT',
        tone: 'info',
        text: event.answer
          ? `${event.agentId} ${answered(event.answer)}`
          : `${event.agentId} resumed: ${event.settled.join(', ') || 'nothing'} settled`,
      }
    case 'agent.message':
      return {
        category: 'AGENT',
        tone: 'info',
        text: `${event.agentId} got a message from ${event.from}: ${short(event.text)}`,
      }
    case 'agent.warning':
      return { category: 'AGENT', tone: 'warn', text: `${event.agentId} warning: ${event.message}` }
    case 'workspace.conflicts':
      return {
        category: 'AGENT',
        tone: 'info',
        text: `${event.agentId} workspace conflicts: ${event.conflicts.map((c) => `${c.file} (changed by ${c.agents.join(', ')})`).join('; ')}`,
      }
    case 'agent.repair':
      return {
        category: 'AGENT',
        tone: 'fail',
        text: `${event.agentId} reply unusable (repair ${event.repairs}): ${event.error}`,
      }
    case 'agent.completed':
      return {
        category: 'AGENT',
        tone: 'ok',
        text: `${event.agentId} completed in ${event.durationMs} ms: ${short(value(event.result))}`,
      }
    case 'agent.failed':
      return {
        category: 'AGENT',
        tone: 'fail',
        text: `${event.agentId} failed after ${event.durationMs} ms: ${event.error.message}`,
      }
    case 'model.started':
      return {
        category: 'LLM',
        tone: 'start',
        text: `${event.agentId} calls ${event.model} (turn ${event.turn + 1})`,
      }
    // One line per streamed fragment: too fine-grained for `info`, so the logger writes it at `debug`.
    case 'model.token':
      return {
        category: 'LLM',
        tone: 'info',
        text: `${event.agentId} token (turn ${event.turn + 1}): ${JSON.stringify(event.text)}`,
      }
    case 'model.retrying':
      return {
        category: 'LLM',
        tone: 'fail',
        text: `${event.agentId} model call failed, retry ${event.retry} of ${event.maxRetries} in ${event.waitMs} ms: ${event.error}`,
      }
    case 'model.completed': {
      const about = event.usageEstimated ? '~' : ''
      const usage = event.usage
        ? `, ${about}${event.usage.promptTokens} in + ${event.usage.completionTokens} out tokens${about && ' (estimated)'}`
        : ''
      const retries = event.retries
        ? `, after ${event.retries} ${event.retries === 1 ? 'retry' : 'retries'}`
        : ''
      return {
        category: 'LLM',
        tone: 'ok',
        text: `${event.agentId} got a reply in ${event.durationMs} ms${usage}${retries}`,
      }
    }
    case 'model.failed':
      return {
        category: 'LLM',
        tone: 'fail',
        text: `${event.agentId} model call failed: ${event.error.message}`,
      }
    case 'tool.started':
      return {
        category: 'TOOL',
        tone: 'start',
        text: `${event.agentId} → ${event.tool} ${short(value(event.args))}`,
      }
    case 'tool.completed':
      return {
        category: 'TOOL',
        tone: 'ok',
        text: `${event.agentId} ← ${event.tool} in ${event.durationMs} ms: ${short(value(event.result))}`,
      }
    case 'tool.failed':
      return {
        category: 'TOOL',
        tone: 'fail',
        text: `${event.agentId} ← ${event.tool} failed: ${event.error.message}`,
      }
  }
}

function value(v: unknown): string {
  if (typeof v === 'string') return v
  try {
    return JSON.stringify(v) ?? String(v)
  } catch {
    return String(v)
  }
}

function short(text: string, max = 120): string {
  const line = text.replace(/\s+/g, ' ').trim()
  return line.length > max ? `${line.slice(0, max - 1)}…` : line
}

/** How a person let an agent go on: the audit line of an approval gate. */
function answered(answer: PersonAnswer): string {
  const call = `${answer.tool} (call ${answer.callId})`
  if (answer.kind === 'approved') return `approved: ${call}`
  if (answer.kind === 'rejected') return `rejected: ${call} — ${short(answer.reason ?? '')}`
  return `got an answer: ${call}`
}

/** What a suspended agent waits for: its children, or a person (an approval, an answer). */
function waitsFor(event: Extract<CohortEvent, { type: 'agent.suspended' }>): string {
  const { awaiting } = event
  if (awaiting?.kind === 'approval')
    return `waiting for approval of ${awaiting.tool} (call ${awaiting.callId})`
  if (awaiting?.kind === 'input') return `waiting for an answer: ${awaiting.prompt}`
  return `waiting on ${event.waitingOn.join(', ') || 'nothing'}`
}
