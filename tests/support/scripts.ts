import type { ScriptedReply } from '@cohort/core'

export { settledChildren as settledResults } from '@cohort/core'

/** A lead's replies: launch one `worker` per task, wait for them all, finish with `result`. */
export function fanOutLead(tasks: string[], result: unknown): ScriptedReply[] {
  return [
    { action: 'launch_subagents', agents: tasks.map((task) => ({ agent: 'worker', task })) },
    { action: 'wait_for_subagents' },
    { action: 'finish', result },
  ]
}

/** Resolves when `predicate` holds, polling every `intervalMs`; rejects after `timeoutMs`. */
export async function waitUntil(
  predicate: () => boolean | Promise<boolean>,
  timeoutMs = 10_000,
  intervalMs = 20,
) {
  const deadline = Date.now() + timeoutMs
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`)
    await new Promise((resolve) => setTimeout(resolve, intervalMs))
  }
}
