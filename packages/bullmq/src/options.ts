import { describeValue, InvalidInputError, refuseUnknownOptions } from '@cohort/core'

/** The options every call on a queue takes (`QueueInput`). */
export const queueOptionNames = ['connection', 'url', 'queue', 'queueName'] as const

/**
 * Refuses options of `subject` that are no object, or hold a key it does not take: a typo
 * (`runid`) would be ignored, and the call run as if it were not there.
 */
export function checkOptions(
  subject: string,
  options: unknown,
  known: readonly string[],
): asserts options is object {
  if (typeof options !== 'object' || options === null || Array.isArray(options))
    throw new InvalidInputError(
      `${subject}: expected an options object ({ ${known.join(', ')} }), got ${describeValue(options)}`,
    )
  refuseUnknownOptions(subject, options, new Set(known))
}

/** Refuses option `name` of `subject`, saying what it must be and what it was. */
export function refuseOption(subject: string, name: string, expected: string, value: unknown): never {
  throw new InvalidInputError(`${subject}: ${name} must be ${expected}, got ${describeValue(value)}`)
}

/**
 * Refuses a queue name that is no string (BullMQ failed with "name.includes is not a function"),
 * and, for the calls that write runs, a runtime that is none: answerRun had already taken the
 * run's waiting jobs off the queue when it reached the runtime.
 */
export function checkQueueCall(
  subject: string,
  options: { runtime?: unknown; queueName?: unknown },
  runtime = true,
): void {
  if (options.queueName !== undefined && (typeof options.queueName !== 'string' || options.queueName === ''))
    refuseOption(subject, 'queueName', 'a non-empty string', options.queueName)
  if (runtime && typeof (options.runtime as { prepareRun?: unknown } | undefined)?.prepareRun !== 'function')
    refuseOption(subject, 'runtime', 'a Runtime made by createRuntime', options.runtime)
}
