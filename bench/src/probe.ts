// A quick in-process look at fan-out cost, for profiling (`node --import tsx --conditions=source
// --cpu-prof src/probe.ts`); the bench proper is main.ts, one fresh process per measurement.
import { cohort } from './cohort.js'
import { xstateIndependent } from './peer-xstate.js'

for (const contender of [xstateIndependent, cohort]) {
  for (const children of [300, 300, 1000, 1000, 1000]) {
    const started = performance.now()
    await contender.fanOut({ workload: 'fan-out', children, steps: 3, latencyMs: 0 })
    const ms = performance.now() - started
    console.log(children, ms.toFixed(1), ((ms * 1000) / (children * 3)).toFixed(1), 'us/step')
  }
}
