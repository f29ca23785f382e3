/** The Lua scripts of `redisStore`: each runs as one step on the server. */

/**
 * Writes agent records with their history chunks (ARGV: the count, then per record its id, its
 * text, its chunk count and the chunks' fields and texts), in one step. A record stored as
 * completed or failed is final: a write from a process that lost the agent (a stalled worker
 * whose job went to another) changes neither it nor its history. Its status is the first
 * "status" of its text, before any nested object (the codec writes it among the first fields).
 */
export const saveAgentsScript = `
local at = 2
for _ = 1, tonumber(ARGV[1]) do
  local id, text, chunks = ARGV[at], ARGV[at + 1], tonumber(ARGV[at + 2])
  at = at + 3
  local stored = redis.call('HGET', KEYS[1], id)
  local status = stored and string.match(stored, '^{[^{]-"status":"(%a+)"')
  local final = status == 'completed' or status == 'failed'
  if not final then redis.call('HSET', KEYS[1], id, text) end
  for _ = 1, chunks do
    if not final then redis.call('HSET', KEYS[2], ARGV[at], ARGV[at + 1]) end
    at = at + 2
  end
end
return 0`

/**
 * How long a claim's key outlives its `until`: an owner stalled past its claim renews it while
 * nobody took the run (as the other stores let it), and a crashed owner's key still goes in the end.
 */
const claimLingerMs = 86_400_000

/** Takes a run's claim when it is free, the caller's, lapsed, or held by the one it replaces (`claimRun`). */
export const claimScript = `
local owner = redis.call('HGET', KEYS[1], 'owner')
if ARGV[5] == '1' and owner ~= ARGV[1] then
  if not owner then return {'', '0'} end
  return {owner, redis.call('HGET', KEYS[1], 'until')}
end
if owner and owner ~= ARGV[1] and owner ~= ARGV[4] then
  local held = tonumber(redis.call('HGET', KEYS[1], 'until'))
  if held and held >= tonumber(ARGV[3]) then return {owner, tostring(held)} end
end
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'until', ARGV[2])
redis.call('PEXPIREAT', KEYS[1], tonumber(ARGV[2]) + ${claimLingerMs})
return {ARGV[1], ARGV[2]}`

export const releaseClaimScript = `
if redis.call('HGET', KEYS[1], 'owner') == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0`
