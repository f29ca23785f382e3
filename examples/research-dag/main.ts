// The research DAG: three researchers in parallel → an analyst → a synthesizer, given as a
// plan (data, no coordinator model). Each agent starts the moment its own dependencies are
// done. Offline on a scripted model; with OPENAI_API_KEY set, on a real model.
import {
  type ChatModel,
  createLogger,
  createRuntime,
  defineAgent,
  planLayers,
  scriptedModel,
  sleep,
} from '@cohort/core'

const scale = Number(process.env.COHORT_DEMO_SCALE ?? 1)
const topics = ['Python web frameworks', 'Rust web frameworks', 'Go web frameworks']

const researcher = defineAgent({
  name: 'researcher',
  instructions: 'You research one topic and finish with three short findings.',
  tools: [sleep],
})
const analyst = defineAgent({
  name: 'analyst',
  instructions: 'You compare the findings you are given and finish with a ranked comparison.',
})
const synthesizer = defineAgent({
  name: 'synthesizer',
  instructions: 'You turn the analysis you are given into a one-paragraph recommendation.',
})

/** The scripted stand-in: researchers "work" for a while, the others summarise their inputs. */
const offline = scriptedModel(
  {
    researcher: [
      { action: 'call_tool', tool: 'sleep', args: { seconds: Math.round(1.5 * scale * 1000) / 1000 } },
      (request) => ({ action: 'finish', result: `findings on ${request.agent.task}` }),
    ],
    analyst: [
      (request) => ({
        action: 'finish',
        result: `compared ${dependencyResults(request.messages).join('; ')}`,
      }),
    ],
    synthesizer: [
      (request) => ({
        action: 'finish',
        result: `pick the first, from an analysis that ${dependencyResults(request.messages).join('; ')}`,
      }),
    ],
  },
  { latencyMs: Math.round(300 * scale) },
)

/** The results a step was given by the steps it depends on. */
function dependencyResults(messages: readonly { content: string }[]): string[] {
  const context =
    messages.find((m) => m.content.startsWith('Results of the agents you depend on: '))?.content ?? '[]'
  const results = JSON.parse(context.slice(context.indexOf('['))) as { id: string; result: unknown }[]
  return results.map((r) => String(r.result))
}

async function chooseModel(): Promise<ChatModel> {
  if (!process.env.OPENAI_API_KEY) return offline
  const { modelFromEnv } = await import('@cohort/openai')
  return modelFromEnv(offline)
}

const plan = {
  agents: [
    ...topics.map((topic, i) => ({ id: `research-${i + 1}`, agent: 'researcher', task: topic })),
    {
      id: 'analysis',
      agent: 'analyst',
      task: 'Compare the three ecosystems',
      depends_on: ['research-1', 'research-2', 'research-3'],
    },
    {
      id: 'summary',
      agent: 'synthesizer',
      task: 'Recommend one for a new web service',
      depends_on: ['analysis'],
    },
  ],
}

const runtime = createRuntime({
  agents: [researcher, analyst, synthesizer],
  model: await chooseModel(),
  logger: createLogger({ colors: process.stdout.isTTY }),
})
console.log('Layers (agents on one line may run side by side):')
for (const [i, layer] of planLayers(plan).entries()) console.log(`  ${i}: ${layer.join(', ')}`)

const run = runtime.runPlan(plan)
const result = (await run.result) as Record<string, unknown>
const metrics = run.metrics()
// A step that failed is its error (a real model that could not be reached, say), not a recommendation.
const summary = result.summary
if (typeof summary === 'string') console.log(`\nRecommendation: ${summary}`)
else {
  const failure = (summary as { error?: { message?: string } } | undefined)?.error?.message
  console.error(`\nNo recommendation: ${failure ?? JSON.stringify(summary)}`)
  process.exitCode = 1
}
console.log(
  `\nWall ${(metrics.wallMs / 1000).toFixed(2)} s, agents busy ${(metrics.busyMs / 1000).toFixed(2)} s, ` +
    `speedup ${metrics.speedup}×, efficiency ${metrics.efficiency}`,
)
