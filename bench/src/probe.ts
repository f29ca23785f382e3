import { xstateIndependent } from './peer-xstate.js'
import { cohort } from './cohort.js'
for (const c of [xstateIndependent, cohort]) for (const n of [300, 300, 1000, 1000, 1000]) {
  const t = performance.now(); await c.fanOut({ children: n, steps: 3, latencyMs: 0 }); const ms = performance.now() - t
  console.log(n, ms.toFixed(1), ((ms * 1000) / (n * 3)).toFixed(1), 'us/step')
}
