import {
  type AgentRecord,
  applyRetention,
  checkRetention,
  hasBounds,
  InvalidInputError,
  type RunRecord,
  type RunRetention,
} from '@cohort/core'
import { assertSchemaName, type PostgresStore, type PostgresStoreOptions } from './options.js'
import { postgresClaims } from './run-claims.js'
import { deleteRunRows, pruneRuns, saveRunRow } from './run-queries.js'
import { postgresReads } from './run-reads.js'
import { saveAgentRows } from './save-agents.js'
import { storeConnection } from './store-connection.js'

export type { PostgresStore, PostgresStoreOptions } from './options.js'

/**
 * A `RunStore` on PostgreSQL: one row per run and one per agent, each holding its record as
 * jsonb (`record->>'status'` in psql; see `recordColumns`), beside the columns that listing
 * filters on. Given a connection string alone (`postgresStore(process.env.DATABASE_URL)`), it
 * makes its pool from it.
 */
export function postgresStore(given: PostgresStoreOptions | string = {}): PostgresStore {
  const options = storeOptions(given)
  const schema = options.schema ?? 'cohort'
  assertSchemaName(schema)
  const retention = checkRetention(options.retention)
  const connection = storeConnection(options, schema)
  const { query, q, target } = connection

  const prune = (kept: RunRetention) => pruneRuns(query, q, kept)
  const saveAgents = (runId: string, records: AgentRecord[], storedMessages: readonly number[] = []) =>
    saveAgentRows(query, q, runId, records, storedMessages)

  return {
    migrate: connection.migrate,
    async saveRun(record: RunRecord) {
      await saveRunRow(query, q, record)
      if (record.status !== 'running' && hasBounds(retention))
        await applyRetention(() => prune(retention), `postgres store (${target})`)
    },
    async saveAgent(runId: string, record: AgentRecord, storedMessages = 0) {
      await saveAgents(runId, [record], [storedMessages])
    },
    saveAgents,
    ...postgresReads(query, q, schema),
    async deleteRun(runId: string) {
      await deleteRunRows(query, q, runId)
    },
    ...postgresClaims(query, q, connection.fail),
    async prune(kept?: RunRetention) {
      return prune(kept === undefined ? retention : checkRetention(kept))
    },
    close: connection.close,
  }
}

/** The options a call gave: a connection string stands for `{ connectionString }`. */
function storeOptions(given: unknown): PostgresStoreOptions {
  if (typeof given === 'string') {
    if (given.trim() === '')
      throw new InvalidInputError(
        'postgresStore: the connection string is empty; expected postgres://user@host:port/database',
      )
    return { connectionString: given }
  }
  if (given === null || typeof given !== 'object' || Array.isArray(given)) {
    throw new InvalidInputError(
      `postgresStore takes a connection string (postgres://…) or options ({ connectionString, schema, pool, … }); got ${given === null ? 'null' : Array.isArray(given) ? 'an array' : typeof given}`,
    )
  }
  return given as PostgresStoreOptions
}
