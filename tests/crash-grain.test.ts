import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, expect, test } from 'vitest'
import { collect, resultLine, spawnTs } from './support/processes.js'

let dir: string
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'cohort-grain-'))
})
afterAll(async () => {
  await rm(dir, { recursive: true, force: true })
})

/**
 * With `durability: 'sync'` a step is stored before any effect that depends on it starts: after a
 * kill -9, only the effects in flight run again, at most one per agent (a model call or a tool
 * call), and a tool call runs again only with the arguments it first had (the model's reply that
 * chose them was stored before the tool ran).
 */
test.each([0.25, 0.5, 0.75])(
  'kill -9 at %f of the run: per agent at most one model call or tool effect repeated, never a tool with other arguments',
  async (at) => {
    const storeDir = path.join(dir, `store-${at}`)
    const ledger = path.join(dir, `ledger-${at}.txt`)
    const runId = `grain-${String(at).replace('.', '')}`
    const args = ['start', storeDir, runId, ledger]
    // How long a whole run takes here, measured on the first trial's own clean run is not needed:
    // the kill comes after a fraction of the ledger's expected lines (20 agents × 17 lines).
    const first = spawnTs('tests/fixtures/grain-scenario.ts', args)
    let killed = false
    const watch = setInterval(async () => {
      const lines = (await readFile(ledger, 'utf8').catch(() => '')).split('\n').length
      if (!killed && lines > at * 20 * 17) {
        killed = true
        first.kill('SIGKILL')
      }
    }, 2)
    const firstOut = await collect(first)
    clearInterval(watch)
    expect(firstOut.signal, firstOut.stdout).toBe('SIGKILL')
    const atKill = (await readFile(ledger, 'utf8')).trim().split('\n').length

    const second = await collect(
      spawnTs('tests/fixtures/grain-scenario.ts', ['resume', storeDir, runId, ledger]),
    )
    expect(second.code, second.stderr).toBe(0)
    expect(resultLine(second.stdout)).toBe('paid')

    const lines = (await readFile(ledger, 'utf8')).trim().split('\n')
    expect(lines.length).toBeGreaterThan(atKill)
    const repeatsByAgent = new Map<string, number>()
    const seen = new Map<string, number>()
    const argsByCall = new Map<string, Set<string>>()
    for (const line of lines) {
      const [kind, agent, key, amount] = line.split(' ')
      // A model call is one (agent, turn); a tool call one (agent, turn.index) whatever its arguments.
      const call = kind === 'model' ? `model ${agent} ${key}` : `tool ${agent} ${key!.split(':')[2]}`
      const count = (seen.get(call) ?? 0) + 1
      seen.set(call, count)
      if (count > 1) repeatsByAgent.set(agent!, (repeatsByAgent.get(agent!) ?? 0) + 1)
      if (kind === 'tool') {
        const amounts = argsByCall.get(call) ?? new Set()
        amounts.add(amount!)
        argsByCall.set(call, amounts)
      }
    }
    for (const [agent, repeats] of repeatsByAgent) expect(repeats, `agent ${agent}`).toBeLessThanOrEqual(1)
    for (const [call, amounts] of argsByCall) expect([...amounts], call).toHaveLength(1)
    // Every agent made all its calls: 20 × (8 tool calls + 9 model calls), repeats aside.
    expect(seen.size).toBe(20 * 17)
  },
  60_000,
)
