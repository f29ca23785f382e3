import { CohortError, type RunStore, StoreError } from '@cohort/core'

/**
 * The store, its failures told as `StoreError`s naming the store, what it was doing and the run: a
 * Redis reply error (`WRONGTYPE` on a key written by something else) names neither.
 */
export function withStoreErrors<S extends RunStore>(name: string, store: S): S {
  const wrapped: Record<string, unknown> = {}
  for (const [method, fn] of Object.entries(store) as [string, (...args: unknown[]) => Promise<unknown>][]) {
    wrapped[method] = async (...args: unknown[]) => {
      try {
        return await fn(...args)
      } catch (error) {
        if (error instanceof CohortError) throw error
        const runId = typeof args[0] === 'string' ? args[0] : (args[0] as { id?: unknown } | undefined)?.id
        const run = typeof runId === 'string' ? ` of run ${runId}` : ''
        throw new StoreError(
          `${name}: ${method}${run} failed: ${(error as Error)?.message ?? String(error)}`,
          {
            cause: error,
          },
        )
      }
    }
  }
  return wrapped as S
}

export function failOnError(results: [Error | null, unknown][] | null): void {
  const failed = results?.find(([error]) => error)
  if (failed?.[0]) throw failed[0]
}
