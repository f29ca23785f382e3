export { type CancelRunOptions, type CancelRunResult, cancelRun } from './cancel.js'
export { type ConnectionInput, redisOptionsFromUrl } from './connection.js'
export {
  type AnswerRunOptions,
  answerRun,
  defaultQueueName,
  type EnqueueRunOptions,
  enqueueRun,
  type QueueInput,
  type ResumeRunOptions,
  resumeRun,
  type SegmentJobData,
  type SegmentJobResult,
  segmentJobId,
} from './jobs.js'
export { type RedisLimits, type RedisLimitsOptions, redisLimits } from './limits.js'
export { type RedisStore, type RedisStoreOptions, redisStore } from './store.js'
export { type WaitForRunOptions, waitForRun } from './wait.js'
export { type CohortWorker, type CreateWorkerOptions, createWorker } from './worker.js'
