// A lead agent launches two workers that sleep 3 s and 8 s, waits for both, and finishes
// with both results. They run at the same time: the total is about 8 s, not 11 s.
// Offline on a scripted model; set OPENAI_API_KEY (and optionally OPENAI_BASE_URL,
// COHORT_MODEL) to run the same agents on a real model.
import path from 'node:path'
import {
  type ChatModel,
  createLogger,
  createRuntime,
  defineAgent,
  fileStore,
  scriptedModel,
  settledChildren,
  sleep,
} from '@cohort/core'

/** Seconds each worker sleeps; COHORT_DEMO_SCALE shrinks them (the tests run the demo at 0.1). */
const scale = Number(process.env.COHORT_DEMO_SCALE ?? 1)
const naps = [3, 8].map((seconds) => Math.round(seconds * scale * 1000) / 1000)

const worker = defineAgent({
  name: 'worker',
  instructions:
    'You are a worker. Use the sleep tool for exactly the number of seconds in your task, then finish with a one-line report.',
  tools: [sleep],
})

const lead = defineAgent({
  name: 'lead',
  instructions: `You are the lead. Launch two workers at once, one told to sleep ${naps[0]} seconds and one ${naps[1]} seconds, wait for both, then finish with both of their reports.`,
  subagents: [worker],
})

const offline = scriptedModel(
  {
    lead: [
      {
        action: 'launch_subagents',
        agents: [
          { agent: 'worker', task: `Sleep for ${naps[0]} seconds`, id: 'short' },
          { agent: 'worker', task: `Sleep for ${naps[1]} seconds`, id: 'long' },
        ],
      },
      { action: 'wait_for_subagents', ids: ['short', 'long'] },
      (request) => ({
        action: 'finish',
        result: Object.fromEntries(settledChildren(request).map((child) => [child.id, child.result])),
      }),
    ],
    worker: [
      (request) => ({
        action: 'call_tool',
        tool: 'sleep',
        args: { seconds: Number(/[\d.]+/.exec(request.agent.task)?.[0] ?? 0) },
      }),
      (request) => ({
        action: 'finish',
        result: `${request.agent.id}: ${request.agent.task.toLowerCase()} — done`,
      }),
    ],
  },
  { latencyMs: 50 },
)

async function chooseModel(): Promise<ChatModel> {
  if (!process.env.OPENAI_API_KEY) return offline
  const { modelFromEnv } = await import('@cohort/openai')
  return modelFromEnv(offline)
}

const model = await chooseModel()
// The `.cohort` of the folder pnpm was run in (`pnpm demo` at the top: the repository's), where `cohort show` looks.
const home = path.resolve(process.env.INIT_CWD ?? process.cwd(), '.cohort')
const logger = createLogger({ dir: path.join(home, 'logs') })
const runtime = createRuntime({
  agents: [lead, worker],
  model,
  store: fileStore(path.join(home, 'runs')),
  logger,
})

console.log(`Cohort demo on ${model.name === 'scripted' ? 'the scripted model (offline)' : model.name}`)
const started = performance.now()
const run = runtime.start('lead', 'Run two sleeping workers in parallel and report.')
const result = await run.result.catch(async (error: unknown) => {
  // A bad key, an unreachable endpoint: said in one line, with the log files written.
  console.error(`\nThe run failed: ${error instanceof Error ? error.message : String(error)}`)
  await logger.close()
  process.exit(1)
})
const seconds = (performance.now() - started) / 1000

console.log('\nResult:', JSON.stringify(result, null, 2))
// From the workers that ran, as measured: a real model may launch other naps, or none.
const workers = run
  .metrics()
  .perAgent.filter((agent) => agent.name === 'worker')
  .map((agent) => agent.durationMs / 1000)
const sum = workers.reduce((total, worker) => total + worker, 0)
console.log(
  `\nTotal time: ${seconds.toFixed(2)} s ${
    workers.length === 0
      ? '(the lead launched no workers)'
      : `(${workers.length} worker${workers.length === 1 ? '' : 's'}: one after the other would take ${sum.toFixed(2)} s; the longest took ${Math.max(...workers).toFixed(2)} s)`
  }`,
)
const shown = path.relative(process.env.INIT_CWD ?? process.cwd(), home) || '.'
console.log(
  `Run ${run.id} is stored in ${shown}/runs (\`npx -y pnpm@10 cohort show ${run.id}\`); per-agent logs are in ${shown}/logs/${run.id}/`,
)
await logger.close()
