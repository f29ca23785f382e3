// Reproduces the benchmark table of the parallel executor write-up: each scenario runs one
// agent after another, then as a plan where every agent starts as soon as its dependencies
// are done, in this same process, and the table shows both wall times and the speedup.
import { createRuntime, defineAgent, type Plan, scriptedModel, sleep } from '@cohort/core'
import { modelFromEnv } from '@cohort/openai'

const scale = Number(process.env.COHORT_DEMO_SCALE ?? 1)
const seconds = (s: number) => Math.round(s * scale * 1000) / 1000

const worker = defineAgent({
  name: 'worker',
  instructions: 'Work for the seconds in your task.',
  tools: [sleep],
})
// The failing agent stays scripted on any model: its reply is never an action, so it fails for sure.
const broken = defineAgent({
  name: 'broken',
  instructions: 'Always fails.',
  limits: { maxRepairs: 0 },
  model: scriptedModel({ broken: ['this reply is not an action'] }),
})

const offline = scriptedModel({
  worker: [
    (request) => ({ action: 'call_tool', tool: 'sleep', args: { seconds: Number(request.agent.task) } }),
    (request) => ({ action: 'finish', result: `${request.agent.id} worked ${request.agent.task} s` }),
  ],
})
// Workers run on a real endpoint when OPENAI_API_KEY is set (OPENAI_BASE_URL, COHORT_MODEL).
const runtime = createRuntime({ agents: [worker, broken], model: modelFromEnv(offline) })

const step = (id: string, work: number, extra: Partial<Plan['agents'][number]> = {}) => ({
  id,
  agent: 'worker',
  task: String(seconds(work)),
  ...extra,
})

const scenarios: { name: string; plan: Plan }[] = [
  {
    name: '3 independent agents',
    plan: { agents: [step('memory', 0.5), step('mcp', 0.3), step('personal', 0.4)] },
  },
  {
    name: '2 independent + 1 dependent',
    plan: {
      agents: [
        step('memory', 0.5),
        step('mcp', 0.3),
        step('reporter', 1.0, { depends_on: ['memory', 'mcp'] }),
      ],
    },
  },
  {
    name: 'With 1 timeout (5 s agent, 1 s limit)',
    plan: {
      agents: [
        step('memory', 0.5),
        step('mcp', 0.3),
        step('stuck', 5, { timeout_ms: seconds(1) * 1000, fallback: 'fallback: no data' }),
      ],
    },
  },
  {
    name: 'With 1 error',
    plan: {
      agents: [step('memory', 0.5), step('mcp', 0.3), { id: 'failing', agent: 'broken', task: 'fail' }],
    },
  },
]

/** The first worker step of `result` that failed, as one line; the "broken" step fails on purpose. */
function failedWorker(plan: Plan, result: unknown): string | undefined {
  for (const agentStep of plan.agents) {
    if (agentStep.agent !== 'worker') continue
    const value = (result as Record<string, unknown>)[agentStep.id]
    const message = (value as { error?: { message?: string } } | undefined)?.error?.message
    if (message !== undefined) return `step "${agentStep.id}" failed: ${message}`
  }
  return undefined
}

/** Runs `plan` one agent at a time, each as its own run, in dependency order. */
async function sequential(plan: Plan): Promise<{ ms: number; failure: string | undefined }> {
  const started = performance.now()
  let failure: string | undefined
  for (const agentStep of plan.agents) {
    const result = await runtime.runPlan({ agents: [{ ...agentStep, depends_on: [] }] }).result
    failure ??= failedWorker(plan, result)
  }
  return { ms: performance.now() - started, failure }
}

async function parallel(plan: Plan): Promise<{ ms: number; result: unknown }> {
  const started = performance.now()
  const result = await runtime.runPlan(plan).result
  return { ms: performance.now() - started, result }
}

const rows: string[] = []
for (const scenario of scenarios) {
  const seq = await sequential(scenario.plan)
  const par = await parallel(scenario.plan)
  // Times of steps that failed (a bad key, an unreachable endpoint) are no benchmark: said in one line.
  const failure = seq.failure ?? failedWorker(scenario.plan, par.result)
  if (failure) {
    console.error(`The benchmark failed in "${scenario.name}": ${failure}`)
    process.exit(1)
  }
  rows.push(
    `| ${scenario.name.padEnd(38)} | ${(seq.ms / 1000).toFixed(2).padStart(9)} s | ${(par.ms / 1000).toFixed(2).padStart(7)} s | ${(seq.ms / par.ms).toFixed(1).padStart(6)}× |`,
  )
  console.error(`${scenario.name}: ${JSON.stringify(par.result)}`)
}
console.log(`\nMeasured in one run${scale === 1 ? '' : ` (times scaled by ${scale})`}:\n`)
console.log(`| ${'Scenario'.padEnd(38)} | Sequential  | Parallel  | Speedup |`)
console.log(`|${'-'.repeat(40)}|-------------|-----------|---------|`)
for (const row of rows) console.log(row)
