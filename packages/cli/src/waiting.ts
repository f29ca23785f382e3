/** What an agent waits on, as the command line says it: the commands that give it what it waits for. */
import { type Awaiting, InvalidInputError } from '@cohort/core'

/** The commands that decide a call waiting for approval. */
export function approvalCommands(runId: string, agentId: string, callId: string): string {
  return `\`cohort approve ${runId} ${agentId} ${callId}\` or \`cohort reject ${runId} ${agentId} ${callId}\``
}

/** The commands that give an agent what it waits for: approve or reject its call, or answer it. */
export function answerCommands(runId: string, agentId: string, { kind, callId }: Awaiting): string {
  return kind === 'approval'
    ? approvalCommands(runId, agentId, callId)
    : `\`cohort answer ${runId} ${agentId} <answer>\``
}

/**
 * `cohort answer` is for an agent that waits for input (`ctx.suspend`). Core's resume would also
 * approve a pending call, but an approval must name the call it approves: refused here.
 */
export function refuseAnswerToApproval(runId: string, agentId: string, awaiting: Awaiting | undefined): void {
  if (awaiting?.kind !== 'approval') return
  throw new InvalidInputError(
    `agent ${agentId} of run ${runId} waits for approval of call ${awaiting.callId} (${awaiting.tool}), not for an answer: ${approvalCommands(runId, agentId, awaiting.callId)}`,
  )
}
