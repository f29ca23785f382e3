// When each round of a fan-out's model calls starts, run after run in one warm process: where a
// durable fan-out's time goes (the launch, then how long a round's replies take to handle).
//   pnpm --filter @cohort/bench timeline [--children 1000] [--latency 500] [--store memory|postgres] [--runs 5]
// Listening to `model.started` makes the runtime build its events: each step costs a little more.
import { memoryStore, type RunStore } from '@cohort/core'
import { closeStores, fanOutRuntime, freshPostgresStore } from './cohort.js'

const steps = 3

interface Options {
  children: number
  latencyMs: number
  store: 'memory' | 'postgres'
  runs: number
}

function parseArgs(argv: string[]): Options {
  const options: Options = { children: 1_000, latencyMs: 500, store: 'memory', runs: 5 }
  for (let i = 0; i < argv.length; i += 2) {
    const [flag, value] = [argv[i], argv[i + 1] ?? '']
    const count = Number(value)
    if (flag === '--store' && (value === 'memory' || value === 'postgres')) options.store = value
    else if (flag !== '--store' && Number.isInteger(count) && count >= 0) {
      if (flag === '--children' && count > 0) options.children = count
      else if (flag === '--latency') options.latencyMs = count
      else if (flag === '--runs' && count > 0) options.runs = count
      else throw new Error(`unknown or out of range: ${flag} ${value}`)
    } else {
      throw new Error(
        `unknown argument ${flag} ${value}; expected --children <n>, --latency <ms>, --store memory|postgres, --runs <n>`,
      )
    }
  }
  return options
}

const { children, latencyMs, store: kind, runs } = parseArgs(process.argv.slice(2))
const store: RunStore = kind === 'postgres' ? freshPostgresStore() : memoryStore()
const runtime = fanOutRuntime(children, steps, latencyMs, store)
const range = (times: number[]) =>
  times.length === 0 ? '–' : `${times[0]!.toFixed(1)}–${times[times.length - 1]!.toFixed(1)}`

console.log(`${children} × ${steps} × ${latencyMs} ms on ${kind}Store, 'sync': ms from the run's start`)
try {
  for (let i = 0; i < runs; i++) {
    // The workers' model calls, by turn (the lead is at depth 0).
    const starts: number[][] = Array.from({ length: steps }, () => [])
    const started = performance.now()
    const run = runtime.start('lead', 'go')
    run.on('model.started', (event) => {
      if (event.depth > 0) starts[event.turn]?.push(performance.now() - started)
    })
    await run.result
    const wall = performance.now() - started
    const rounds = starts.map((times, turn) => `round ${turn + 1} ${range(times)}`).join(', ')
    const efficiency = latencyMs > 0 ? ` (efficiency ${((steps * latencyMs) / wall).toFixed(3)})` : ''
    console.log(`run ${i + 1}: calls start ${rounds}; wall ${wall.toFixed(1)}${efficiency}`)
    await store.deleteRun?.(run.id)
  }
} finally {
  await closeStores()
}
