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
