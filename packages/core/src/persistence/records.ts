import { z } from 'zod'
import { agentContextSchema, errorInfoSchema } from '../agent/context.js'

export type RunId = string
export type RunStatus = z.infer<typeof runStatusSchema>

export interface StoredRun {
  run: RunRecord
  agents: AgentRecord[]
}

export interface RunFilter {
  status?: RunStatus | RunStatus[]
  /** Only runs created at or after this time (epoch ms). */
  since?: number
  /** Only runs created before this time (epoch ms). */
  until?: number
  limit?: number
  offset?: number
}

/**
 * Which finished runs (completed, failed or cancelled) a store keeps; a running run is never
 * removed. A store applies its own retention each time it saves a finished run, and
 * `prune` applies one on demand.
 */
export interface RunRetention {
  /** Keep at most this many finished runs: those that finished first (`updatedAt`) go first. */
  maxFinishedRuns?: number
  /** Remove finished runs whose last update (when they finished) is older than this many ms. */
  maxAgeMs?: number
}

/** A store is a small interface; every implementation passes the same conformance suite. */
export interface RunStore {
  saveRun(record: RunRecord): Promise<void>
  /**
   * Writes one agent's record; only the agent that changed is written on a step.
   * `storedMessages`: how many of the record's first messages an earlier save of this agent
   * stored (0 when unknown). A store that keeps each agent's history beside its record appends
   * only the rest (`encodeAgentRecordParts`), so a write does not grow with the history; a store
   * that keeps whole records ignores it.
   */
  saveAgent(runId: RunId, record: AgentRecord, storedMessages?: number): Promise<void>
  /**
   * Writes the agents of one run changed in the same turn of the event loop, all or none where
   * the store can (one transaction, one pipeline); without it, `saveAgent` is called for each.
   * `storedMessages[i]` is `records[i]`'s, as in `saveAgent`.
   */
  saveAgents?(runId: RunId, records: AgentRecord[], storedMessages?: readonly number[]): Promise<void>
  loadRun(runId: RunId): Promise<StoredRun | undefined>
  /** One agent's record; lets a distributed worker read only what one step needs. */
  loadAgent?(runId: RunId, agentId: string): Promise<AgentRecord | undefined>
  /** The run record alone. */
  loadRunRecord?(runId: RunId): Promise<RunRecord | undefined>
  /** Newest first. */
  listRuns(filter?: RunFilter): Promise<RunRecord[]>
  deleteRun?(runId: RunId): Promise<void>
  /**
   * Claims the run for `request.owner` until `request.until` (epoch ms), atomically: granted when
   * no one holds it, when the owner holds it already (a renewal), when the claim held has lapsed,
   * or when it is held by `request.replacing` (a holder the caller found dead); a renewal
   * (`renewing`) only while the owner holds it. Returns the claim that holds afterwards: the
   * owner's when granted, the holder's when not (`noClaim` when none). A runtime claims each
   * run it starts, resumes or answers, so that two processes never run one run at once; a store
   * without claims leaves that to its user.
   */
  claimRun?(runId: RunId, request: ClaimRequest): Promise<RunClaim>
  /** Lets go of the owner's claim on the run; a claim someone else holds is left as it is. */
  releaseRun?(runId: RunId, owner: string): Promise<void>
  /**
   * Removes the finished runs, with their agents, that `retention` (default: the store's own)
   * does not keep; returns their ids, oldest first.
   */
  prune?(retention?: RunRetention): Promise<RunId[]>
  close?(): Promise<void>
}

const runIdPattern = /^[a-zA-Z0-9_-]{1,64}$/

/** An agent's id: its root's name, then each child's id, joined by dots (`lead.prices.eu`). */
const agentIdPattern = /^[a-zA-Z0-9_-]+(\.[a-zA-Z0-9_-]+)*$/

/** Who runs a run, and until when their claim holds unless renewed. */
export interface RunClaim {
  owner: string
  /** Epoch ms. */
  until: number
}

export interface ClaimRequest extends RunClaim {
  /** A holder found dead: its claim is taken over even before it lapses. */
  replacing?: string
  /**
   * A renewal: granted only while the owner still holds the claim (lapsed or not). A claim let go
   * of or taken by another since means the owner lost the run, and must not get it back unasked.
   */
  renewing?: boolean
}

/** What `claimRun` answers when nobody holds the run (a renewal of a claim let go of since). */
export const noClaim: RunClaim = { owner: '', until: 0 }

/** Whether `request` gets the run, `current` being the claim on it now (shared by the stores that decide in code). */
export function claimGranted(
  current: RunClaim | undefined,
  request: ClaimRequest,
  now = Date.now(),
): boolean {
  if (request.renewing) return current?.owner === request.owner
  return (
    current === undefined ||
    current.owner === request.owner ||
    current.until < now ||
    (request.replacing !== undefined && current.owner === request.replacing)
  )
}

/** A store with every optional method: Cohort's own (`memoryStore`, `fileStore`, …) are. */
export type KeepingStore = RunStore &
  Required<Pick<RunStore, 'loadAgent' | 'loadRunRecord' | 'deleteRun' | 'prune' | 'claimRun' | 'releaseRun'>>

export const runStatusSchema = z.enum(['running', 'completed', 'failed', 'cancelled'])

// One schema per record: the types below and the validation of records read back come from these.

/** The stored format's version: a record of another one (a newer Cohort's) says what it is. */
const formatVersion = z.literal(1, {
  error: (issue) =>
    issue.input === undefined
      ? 'missing; expected format version 1'
      : `format version ${JSON.stringify(issue.input)}; this version of Cohort reads format version 1 (a record written by another version of Cohort?)`,
})

/** A run as stored: what was asked, and how it ended. */
export const runRecordSchema = z.object({
  version: formatVersion,
  id: z.string().regex(runIdPattern, 'expected a run id: 1-64 letters, digits, "_" or "-"'),
  /** Name of the root agent's definition, and the task it was given. */
  agent: z.string(),
  task: z.string(),
  rootAgentId: z.string(),
  status: runStatusSchema,
  /** Epoch ms: when the run was created, and when it last changed status (its end, once finished). */
  createdAt: z.number(),
  updatedAt: z.number(),
  /**
   * Time the run spent stopped, in ms: from each `detach` to the `resume` that followed, wherever
   * each ran. Wall time in metrics leaves it out (`runWallMs`). Absent in records written before it.
   */
  stoppedMs: z.number().min(0).exactOptional(),
  /** Epoch ms of the `detach` that stopped the run; absent while a process runs it. */
  detachedAt: z.number().exactOptional(),
  /**
   * The most agents busy at once (in a model call or a tool) in any process that ran the run, as
   * of its last detach or its end, so that metrics after a resume count the whole run.
   */
  peakParallelism: z.number().int().min(0).exactOptional(),
  /**
   * Made by `prepareRun` for hosts that run it in segments (BullMQ workers): `runtime.resume`
   * refuses it, as it would run its agents beside theirs. Absent for a run a runtime runs itself.
   */
  distributed: z.literal(true).exactOptional(),
  /**
   * The settled agent whose session this run's root continues (`StartOptions.continueFrom`): its
   * messages are the root's first. Absent for a run that continues none.
   */
  continuedFrom: z.object({ runId: z.string(), agentId: z.string() }).exactOptional(),
  result: z.unknown().exactOptional(),
  error: errorInfoSchema.exactOptional(),
})
export type RunRecord = z.infer<typeof runRecordSchema>

/** An agent's XState persisted snapshot (`getPersistedSnapshot()`): state value and context. */
export const persistedAgentSnapshotSchema = z.looseObject({
  status: z.enum(['active', 'done', 'error', 'stopped']),
  /** A top-level state, or one with its child (`{ running: 'thinking' }`): the agent machine is two deep. */
  value: z.union([z.string(), z.record(z.string(), z.string())]),
  context: agentContextSchema,
  children: z.record(z.string(), z.unknown()),
})
export type PersistedAgentSnapshot = z.infer<typeof persistedAgentSnapshotSchema>

/** An agent as stored: its persisted snapshot, with what a store indexes beside it. */
export const agentRecordSchema = z.object({
  version: formatVersion,
  runId: z.string().regex(runIdPattern, 'expected a run id: 1-64 letters, digits, "_" or "-"'),
  id: z.string().regex(agentIdPattern, 'expected an agent id: letters, digits, "_" or "-" joined by dots'),
  name: z.string(),
  parentId: z.string().nullable(),
  depth: z.number().int().min(0),
  status: z.enum(['idle', 'running', 'suspended', 'completed', 'failed']),
  updatedAt: z.number(),
  snapshot: persistedAgentSnapshotSchema,
})
export type AgentRecord = z.infer<typeof agentRecordSchema>

export function isValidRunId(runId: unknown): runId is RunId {
  return typeof runId === 'string' && runIdPattern.test(runId)
}

export function isValidAgentId(agentId: unknown): agentId is string {
  return typeof agentId === 'string' && agentIdPattern.test(agentId)
}
