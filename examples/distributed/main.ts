// Distributed runs on BullMQ: workers share one queue (Redis) and one store, and one job is
// one segment of one agent, so a run's agents spread over every worker.
//   main.ts              N workers in this process (COHORT_WORKERS, default 3), submit runs, print results
//   main.ts --processes  the same with each worker in its own process
//   main.ts worker       one long-running worker (start as many as you like), until Ctrl-C
// Offline on a scripted model; on a real one when OPENAI_API_KEY is set. Redis at REDIS_URL; runs kept in Redis, or in PostgreSQL when
// DATABASE_URL is set.
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { createWorker, enqueueRun, redisStore, waitForRun } from '@cohort/bullmq'
import {
  createRuntime,
  defineAgent,
  type RunStore,
  scriptedModel,
  settledChildren,
  sleep,
} from '@cohort/core'
import { modelFromEnv } from '@cohort/openai'

const queueName = process.env.COHORT_QUEUE ?? 'cohort-example'
const workerCount = Number(process.env.COHORT_WORKERS ?? 3)
const runCount = Number(process.env.COHORT_RUNS ?? 3)
const topics = ['queues', 'stores', 'locks']

const researcher = defineAgent({
  name: 'researcher',
  instructions: 'Research one topic, then report.',
  tools: [sleep],
})
const lead = defineAgent({
  name: 'lead',
  instructions: 'Split the question, wait for the researchers, combine.',
  subagents: [researcher],
})
const offline = scriptedModel(
  {
    lead: [
      {
        action: 'launch_subagents',
        agents: topics.map((topic) => ({ agent: 'researcher', task: topic, id: topic })),
      },
      { action: 'wait_for_subagents' },
      (request) => ({
        action: 'finish',
        result: settledChildren(request).map((child) => child.result),
      }),
    ],
    researcher: [
      { action: 'call_tool', tool: 'sleep', args: { seconds: 0.3 } },
      (request) => ({ action: 'finish', result: `notes on ${request.agent.task}` }),
    ],
  },
  { latencyMs: 50 },
)
// A real endpoint when OPENAI_API_KEY is set (OPENAI_BASE_URL, COHORT_MODEL), else the script above.
const model = modelFromEnv(offline)

async function openStore(): Promise<RunStore> {
  if (!process.env.DATABASE_URL) return redisStore({ prefix: 'cohort-example:' })
  const { postgresStore } = await import('@cohort/postgres')
  return postgresStore({ connectionString: process.env.DATABASE_URL })
}

/** A runtime whose events say which worker ran what. */
function runtimeFor(store: RunStore, label: string) {
  return createRuntime({
    agents: [lead, researcher],
    model,
    store,
    logger: {
      handle: (event) => {
        if (event.type === 'agent.completed')
          console.log(`[${label}] ${event.runId} ${event.agentId} completed`)
        if (event.type === 'agent.suspended')
          console.log(`[${label}] ${event.runId} ${event.agentId} waits for its children, holding no slot`)
      },
    },
  })
}

async function runWorker(): Promise<void> {
  const store = await openStore()
  const worker = createWorker({ runtime: runtimeFor(store, `pid ${process.pid}`), queueName })
  await worker.worker.waitUntilReady()
  console.log('ready')
  const stop = async () => {
    await worker.close()
    await store.close?.()
    process.exit(0)
  }
  process.on('SIGINT', stop)
  process.on('SIGTERM', stop)
}

/** Starts the workers; returns a function that stops them. */
async function startWorkers(store: RunStore, asProcesses: boolean): Promise<() => Promise<void>> {
  if (!asProcesses) {
    const workers = Array.from({ length: workerCount }, (_, i) =>
      createWorker({ runtime: runtimeFor(store, `worker ${i + 1}`), queueName }),
    )
    await Promise.all(workers.map((worker) => worker.worker.waitUntilReady()))
    return async () => {
      await Promise.all(workers.map((worker) => worker.close()))
    }
  }
  const script = fileURLToPath(import.meta.url)
  const children = Array.from({ length: workerCount }, () => {
    const child = spawn(process.execPath, [...process.execArgv, script, 'worker'], {
      stdio: ['ignore', 'pipe', 'inherit'],
    })
    const ready = new Promise<void>((resolve) => {
      child.stdout.on('data', (chunk: Buffer) => {
        for (const line of chunk.toString().trim().split('\n')) {
          if (line === 'ready') resolve()
          else console.log(line)
        }
      })
    })
    return { child, ready, exited: new Promise((resolve) => child.on('close', resolve)) }
  })
  await Promise.all(children.map((child) => child.ready))
  return async () => {
    for (const { child } of children) child.kill('SIGTERM')
    await Promise.all(children.map((child) => child.exited))
  }
}

async function main(): Promise<void> {
  const asProcesses = process.argv.includes('--processes')
  const store = await openStore()
  const stopWorkers = await startWorkers(store, asProcesses)
  console.log(`${workerCount} workers ${asProcesses ? 'in their own processes' : 'in this process'}`)
  const runtime = runtimeFor(store, 'submitter')
  const started = performance.now()
  const runIds = await Promise.all(
    Array.from({ length: runCount }, async (_, i) => {
      const task = `question ${i + 1}`
      return (await enqueueRun({ queueName, runtime, agent: 'lead', task })).runId
    }),
  )
  for (const runId of runIds) {
    const record = await waitForRun(runId, { store, timeoutMs: 60_000 })
    console.log(`run ${runId}: ${record.status}, result ${JSON.stringify(record.result)}`)
  }
  console.log(`${runCount} runs in ${((performance.now() - started) / 1000).toFixed(2)} s`)
  await stopWorkers()
  await store.close?.()
}

if (process.argv[2] === 'worker') await runWorker()
else await main()
