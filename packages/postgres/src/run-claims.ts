import { assertRunId, noClaim, type RunStore } from '@cohort/core'
import type { Query } from './connection.js'

/** The store's claims (`RunStore.claimRun`): one row per claimed run in `run_claims`. */
export function postgresClaims(
  query: Query,
  q: string,
  fail: (action: string, error: unknown) => Error,
): Required<Pick<RunStore, 'claimRun' | 'releaseRun'>> {
  return {
    async claimRun(runId, request) {
      assertRunId(runId)
      // Taken in one statement when it may be. When not, the claim that holds is read by a
      // statement of its own: the first one's snapshot may predate the claim that beat it.
      for (let attempt = 1; ; attempt++) {
        const taken = await query<{ owner: string; until: string }>(
          `claim run ${runId}`,
          // A renewal only moves the end of a claim the owner still holds; it makes none.
          request.renewing
            ? `UPDATE ${q}.run_claims SET until = $3 WHERE run_id = $1 AND owner = $2 RETURNING owner, until`
            : `INSERT INTO ${q}.run_claims AS c (run_id, owner, until) VALUES ($1, $2, $3)
               ON CONFLICT (run_id) DO UPDATE SET owner = excluded.owner, until = excluded.until
                 WHERE c.owner = excluded.owner OR c.until < $4 OR c.owner = $5
               RETURNING owner, until`,
          request.renewing
            ? [runId, request.owner, request.until]
            : [runId, request.owner, request.until, Date.now(), request.replacing ?? null],
        )
        const held =
          taken[0] ??
          (
            await query<{ owner: string; until: string }>(
              `read the claim on run ${runId}`,
              `SELECT owner, until FROM ${q}.run_claims WHERE run_id = $1`,
              [runId],
            )
          )[0]
        if (held) return { owner: held.owner, until: Number(held.until) }
        if (request.renewing) return noClaim
        // Let go of between the two: try again.
        if (attempt === 5) throw fail(`claim run ${runId}`, new Error('the claim kept changing under it'))
      }
    },
    async releaseRun(runId, owner) {
      assertRunId(runId)
      await query(`release run ${runId}`, `DELETE FROM ${q}.run_claims WHERE run_id = $1 AND owner = $2`, [
        runId,
        owner,
      ])
    },
  }
}
