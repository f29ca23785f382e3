// A config for `cohort run` and `cohort serve`: a lead that fans out to three researchers,
// waits, and writes a summary. Offline on a scripted model; with OPENAI_API_KEY set, on a real one.
import { defineConfig } from '@cohort/cli'
import { defineAgent, scriptedModel, settledChildren, sleep } from '@cohort/core'
import { modelFromEnv } from '@cohort/openai'

const scale = Number(process.env.COHORT_DEMO_SCALE ?? 1)
const researcher = defineAgent({
  name: 'researcher',
  instructions:
    'Research the topic of your task (use sleep to stand for the work), then finish with one finding.',
  tools: [sleep],
})
const lead = defineAgent({
  name: 'lead',
  instructions: 'Split the question into three topics, launch a researcher for each, wait, and summarize.',
  subagents: [researcher],
})

const topics = ['prices', 'competitors', 'regulation']
const offline = scriptedModel(
  {
    lead: [
      (request) => ({
        action: 'launch_subagents',
        agents: topics.map((topic) => ({
          agent: 'researcher',
          task: `${topic} for: ${request.agent.task}`,
          id: topic,
        })),
      }),
      { action: 'wait_for_subagents' },
      (request) => ({
        action: 'finish',
        result: { summary: settledChildren(request).map((child) => `${child.id}: ${String(child.result)}`) },
      }),
    ],
    researcher: [
      (request) => ({
        action: 'call_tool',
        tool: 'sleep',
        args: {
          seconds:
            Math.round((1 + topics.indexOf(request.agent.id.split('.').pop() ?? '')) * scale * 100) / 100,
        },
      }),
      (request) => ({ action: 'finish', result: `finding on ${request.agent.task.split(' for:')[0]}` }),
    ],
  },
  { latencyMs: 200 * scale },
)

export default defineConfig({
  agents: [lead, researcher],
  model: modelFromEnv(offline),
  root: 'lead',
  task: 'Should we enter the market for electric bikes?',
})
