import { awaitedAgents, type ChildResult } from '../agent/context.js'
import { CancelledError, SnapshotError } from '../errors.js'
import { childResult } from './agent-entry.js'
import type { SegmentHooks } from './launch.js'
import type { Orchestrator } from './orchestrator.js'

/** How one segment of one agent ended. */
export type SegmentOutcome =
  | { kind: 'settled'; result: ChildResult }
  | { kind: 'waiting'; on: 'children' | 'dependencies' | 'input' }

/**
 * Runs one agent of a stored run until it settles or must wait for something that happens
 * elsewhere (children or dependencies running in other workers, a person's input). Its
 * children are created and handed to the host, never started here. Called again, a segment
 * picks up from the last stored record: a settled agent just returns its result.
 */
export async function runSegment(
  makeRun: (hooks: Pick<SegmentHooks, 'park' | 'failed'>) => Orchestrator,
  agentId: string,
  signal?: AbortSignal,
): Promise<SegmentOutcome> {
  signal?.throwIfAborted()
  let finish!: (outcome: SegmentOutcome) => void
  let fail!: (error: unknown) => void
  const outcome = new Promise<SegmentOutcome>((resolve, reject) => {
    finish = resolve
    fail = reject
  })
  // A store that cannot write ends the segment with its error, so the host can retry or fail it.
  const run = makeRun({ park: (on) => finish({ kind: 'waiting', on }), failed: (error) => fail(error) })
  const runRecord = await run.reads.runRecord()
  const record = await run.reads.agentRecord(agentId)
  if (!record) throw new SnapshotError(`run ${run.runId}`, `agent "${agentId}" has no record`, 'agentId')
  run.adoptRecord(runRecord)
  const entry = run.restoreAgent(record)
  if (entry.settled) return { kind: 'settled', result: childResult(entry) }

  const { context } = entry
  await run.restoreRemote([...context.children.map((child) => child.id), ...awaitedAgents(context)])

  // Another holds the segment now: stop here, and write nothing over what it stores.
  const letGo = () => {
    run.release(entry)
    fail(signal?.reason)
  }
  if (signal?.aborted) letGo()
  signal?.addEventListener('abort', letGo, { once: true })

  const watch = () => {
    const { snapshot } = entry
    if (snapshot.status === 'done') finish({ kind: 'settled', result: childResult(entry) })
    else if (snapshot.matches({ suspended: 'external' })) finish({ kind: 'waiting', on: 'input' })
  }
  entry.onChange = watch
  // An agent stored waiting on a person has nothing to run here until it is answered.
  watch()
  // A run that has ended fails the agent before its effect starts: no model call for nothing.
  if (signal?.aborted) {
    // Let go of above: nothing starts.
  } else if (runRecord.status !== 'running') {
    run.failAgent(entry, new CancelledError(`the run is ${runRecord.status}`))
  } else {
    run.runEffect(entry)
    if (entry.status === 'idle') run.startWhenReady(entry)
    else if (context.deadline !== null) run.armTimeout(entry, context.deadline)
  }

  const result = await outcome.finally(() => signal?.removeEventListener('abort', letGo))
  await run.writer.flush()
  await run.runEnded
  // Stop without writing: the stored record is the last real state, and the next segment resumes it.
  run.release(entry)
  return result
}
