// A run seen the way XState sees it: the run's actor, one actor per agent, each event they take
// and each state they enter, from the inspector given to `createRuntime({ inspect })`.
// Offline it prints the inspection events; to watch the same run in Stately's visual inspector,
// pass `createBrowserInspector().inspect` (or `createWebSocketInspector()`) from
// `@statelyai/inspect` instead of `logInspection`. Set OPENAI_API_KEY to run on a real model.
import {
  type ChatModel,
  createRuntime,
  defineAgent,
  type Inspector,
  scriptedModel,
  settledChildren,
} from '@cohort/core'

const worker = defineAgent({ name: 'worker', instructions: 'Answer your task in one line, then finish.' })
const lead = defineAgent({
  name: 'lead',
  instructions: 'Launch two workers, one per city, wait for both, then finish with both answers.',
  subagents: [worker],
})

const offline = scriptedModel(
  {
    lead: [
      {
        action: 'launch_subagents',
        agents: [
          { agent: 'worker', task: 'Weather in Oslo', id: 'oslo' },
          { agent: 'worker', task: 'Weather in Lima', id: 'lima' },
        ],
      },
      { action: 'wait_for_subagents' },
      (request) => ({ action: 'finish', result: settledChildren(request).map((child) => child.result) }),
    ],
    worker: [(request) => ({ action: 'finish', result: `${request.agent.task}: mild` })],
  },
  { latencyMs: 20 },
)

async function chooseModel(): Promise<ChatModel> {
  if (!process.env.OPENAI_API_KEY) return offline
  const { modelFromEnv } = await import('@cohort/openai')
  return modelFromEnv(offline)
}

/** The run's actor is `run <id>`; each agent's actor has the agent's id (`lead`, `lead.oslo`). */
const nameOf = (ref: object) => ('id' in ref ? String(ref.id) : '(unknown)')

const logInspection: Inspector = (event) => {
  if (event.type === '@xstate.actor') console.log(`actor     ${nameOf(event.actorRef)}`)
  else if (event.type === '@xstate.event' && !event.event.type.startsWith('xstate.'))
    console.log(`event     ${nameOf(event.actorRef).padEnd(16)} ${event.event.type}`)
  else if (event.type === '@xstate.snapshot') {
    const { value } = event.snapshot as { value?: unknown }
    console.log(`snapshot  ${nameOf(event.actorRef).padEnd(16)} ${JSON.stringify(value)}`)
  }
}

const runtime = createRuntime({ agents: [lead, worker], model: await chooseModel(), inspect: logInspection })
const run = runtime.start('lead', 'Weather in two cities')
run.actor.subscribe((snapshot) => console.log(`run actor is now ${JSON.stringify(snapshot.value)}`))
try {
  console.log('\nResult:', JSON.stringify(await run.result))
} catch (error) {
  // A bad key, an unreachable endpoint: said in one line, as the demo does.
  console.error(`\nThe run failed: ${error instanceof Error ? error.message : String(error)}`)
  process.exitCode = 1
}
