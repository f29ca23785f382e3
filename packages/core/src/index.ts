export {
  type AgentActor,
  type AgentMachine,
  type AgentMachineEvent,
  type AgentSnapshot,
  agentMachine,
} from './agent/agent-machine.js'
export type { AgentContext, AgentStatus, Awaiting, ChildLink, ChildResult } from './agent/context.js'
export { type AgentDefinition, type AgentOptions, defineAgent } from './agent/define-agent.js'
export { type AgentLimits, defaultLimits, maxTimeoutMs, type RunLimits } from './agent/limits.js'
export {
  AgentFailedError,
  CancelledError,
  CohortError,
  describeValue,
  type ErrorInfo,
  InvalidInputError,
  LimitExceededError,
  ModelError,
  ParseError,
  RunBusyError,
  RunNotFoundError,
  refuseUnknownOptions,
  SnapshotError,
  StoreError,
  TimeoutError,
} from './errors.js'
export { describeEvent, type EventCategory, type EventLine } from './events/describe-event.js'
export { EventBus, type EventListener } from './events/event-bus.js'
export { consoleColors, createLogger, type EventSink, type LoggerOptions } from './events/logger.js'
export {
  type AgentEvent,
  type CohortEvent,
  type CohortEventType,
  cohortEventTypes,
  type PersonAnswer,
  type RunEvent,
} from './events/types.js'
export {
  type CommandModelOptions,
  type CommandOutput,
  commandModel,
  type ProcessRecord,
} from './models/command-model.js'
export { maxRetryWaitMs, type RetryOptions, retrying } from './models/retry.js'
export {
  type Script,
  type ScriptedModelOptions,
  type ScriptedReply,
  type ScriptedReplyFn,
  scriptedModel,
  settledChildren,
} from './models/scripted-model.js'
export type {
  ChatMessage,
  ChatModel,
  ModelReply,
  ModelRequest,
  ModelRetry,
  TokenUsage,
  ToolCall,
  ToolSpec,
} from './models/types.js'
export type { Answer } from './orchestrator/answer.js'
export type { CancelledRun } from './orchestrator/cancel-stored.js'
export type { Durability, Inspector } from './orchestrator/config.js'
export type { ContinuedFrom, ContinueFrom } from './orchestrator/continuation.js'
export { type AgentMetrics, type RunMetrics, runWallMs } from './orchestrator/metrics.js'
export {
  type RunActor,
  type RunMachine,
  type RunMachineContext,
  type RunMachineEvent,
  runMachine,
} from './orchestrator/run-machine.js'
export type { SegmentOutcome } from './orchestrator/segment.js'
export {
  assertAgentRecordOf,
  assertRunId,
  chunksNeeded,
  decodeAgentRecord,
  decodeRunRecord,
  encodeAgentRecordParts,
  encodeRecord,
  encodeRecordParts,
  historyChunkSize,
  joinRecordParts,
} from './persistence/codec.js'
export { type FileStoreOptions, fileStore } from './persistence/file-store.js'
export { defaultMemoryRetention, type MemoryStoreOptions, memoryStore } from './persistence/memory-store.js'
export { readAgentRecord, readRunRecord } from './persistence/read.js'
export type {
  AgentRecord,
  ClaimRequest,
  KeepingStore,
  PersistedAgentSnapshot,
  RunClaim,
  RunFilter,
  RunId,
  RunRecord,
  RunRetention,
  RunStatus,
  RunStore,
  StoredRun,
} from './persistence/records.js'
export { claimGranted, isValidAgentId, isValidRunId, noClaim } from './persistence/records.js'
export {
  applyRetention,
  checkRetention,
  checkRunFilter,
  filterRuns,
  hasBounds,
  runsToPrune,
} from './persistence/run-filter.js'
export { dependencyLayers, findCycle } from './plan/dependency-graph.js'
export { type Plan, type PlanStep, parsePlan, planLayers } from './plan/plan.js'
export { planAgentName } from './plan/plan-agent.js'
export type { Action, LaunchSpec, ParseResult } from './protocol/actions.js'
export { extractJson, extractJsonValues } from './protocol/extract-json.js'
export { type ParseContext, parseActions } from './protocol/parse-actions.js'
export { protocolToolSpecs, systemPrompt } from './protocol/prompt.js'
export { Run, type RunSnapshot } from './runtime/run.js'
export {
  type AgentNameOf,
  type AgentResultOf,
  createRuntime,
  type EndedRun,
  type Runtime,
  type RuntimeMetrics,
  type RuntimeOptions,
  type SegmentHost,
  type StartOptions,
} from './runtime/runtime.js'
export { type CallToEstimate, estimateTokens, tokensOfText } from './scheduler/estimate-tokens.js'
export {
  fullAgainAt,
  fullBuckets,
  type RateDecision,
  type RateLimit,
  type RateState,
  settleCall,
  takeCall,
} from './scheduler/rate-buckets.js'
export type { SchedulerOptions, SchedulerStats, SlotRequest } from './scheduler/scheduler.js'
export type { SharedBudget, SharedCall, SharedLimits, SharedStart } from './scheduler/shared-limits.js'
export { TokenBudget } from './scheduler/token-budget.js'
export {
  type AnyTool,
  defineTool,
  type Tool,
  type ToolContext,
  type ToolDefinition,
} from './tools/define-tool.js'
export { sleep } from './tools/sleep.js'
export { type Conflict, type WorkspaceOptions, Workspaces } from './workspaces/workspaces.js'
