import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { pathToFileURL } from 'node:url'
import { expect, test } from 'vitest'
import { completion, startOpenAIServer } from '../packages/openai/test/openai-server.js'
import { collect, repoRoot, spawnTs } from './support/processes.js'

test("the README's first program runs as written", async () => {
  const readme = await readFile(path.join(repoRoot, 'README.md'), 'utf8')
  const program = /## A first program\n\n```ts\n([\s\S]*?)```/.exec(readme)?.[1]
  expect(program).toBeDefined()
  const cwd = await mkdtemp(path.join(tmpdir(), 'cohort-first-'))
  const core = pathToFileURL(path.join(repoRoot, 'packages/core/src/index.ts')).href
  const file = path.join(cwd, 'first.mts')
  await writeFile(
    file,
    `${program!.replace("'@cohort/core'", `'${core}'`)}\nconsole.log('again:', await again.result)\n`,
  )
  const { code, stdout, stderr } = await collect(spawnTs(file, [], {}, cwd))
  expect(code, stderr).toBe(0)
  expect(stdout).toMatch(/^run\.started$/m)
  expect(stdout).toMatch(/^both workers reported\nagain: both workers reported$/m)
  expect(await readdir(path.join(cwd, '.cohort', 'runs'))).toHaveLength(1)
  await rm(cwd, { recursive: true, force: true })
}, 60_000)

test('the demo runs offline: two workers in parallel, the lead suspends and resumes', async () => {
  const cwd = await mkdtemp(path.join(tmpdir(), 'cohort-demo-'))
  await mkdir(path.join(cwd, 'elsewhere'))
  // As `pnpm demo` run in `cwd` starts it: the run is kept where pnpm was run, for `cohort show`.
  const env = { COHORT_DEMO_SCALE: '0.1', OPENAI_API_KEY: '', INIT_CWD: cwd }
  const { code, stdout, stderr } = await collect(
    spawnTs('examples/async-parallel-agents/main.ts', [], env, path.join(cwd, 'elsewhere')),
  )
  expect(code, stderr).toBe(0)
  const runId = /Run (\S+) is stored in \.cohort\/runs \(`npx -y pnpm@10 cohort show \1`\)/.exec(stdout)?.[1]
  expect(runId, stdout).toBeDefined()
  expect(await readdir(path.join(cwd, '.cohort', 'runs'))).toEqual([runId])
  expect(stdout).toMatch(/AGENT lead suspended, waiting on short, long/)
  expect(stdout).toMatch(/AGENT lead resumed: short, long settled/)
  expect(stdout).toMatch(/"long": "lead.long: sleep for 0.8 seconds — done"/)
  const total = Number(/Total time: ([\d.]+) s/.exec(stdout)?.[1])
  // 0.8 s of sleep plus three 50 ms model calls on the critical path; one after the other would be 1.1 s and more.
  expect(total).toBeGreaterThan(0.8)
  expect(total).toBeLessThan(3)
  await rm(cwd, { recursive: true, force: true })
}, 60_000)

test('the research DAG runs offline: layers, a recommendation, and a speedup over one-at-a-time', async () => {
  const { code, stdout, stderr } = await collect(
    spawnTs('examples/research-dag/main.ts', [], { COHORT_DEMO_SCALE: '0.2', OPENAI_API_KEY: '' }),
  )
  expect(code, stderr).toBe(0)
  expect(stdout).toMatch(/0: research-1, research-2, research-3\n\s+1: analysis\n\s+2: summary/)
  expect(stdout).toMatch(
    /Recommendation: pick the first, from an analysis that compared findings on Python web frameworks; /,
  )
  expect(Number(/speedup ([\d.]+)×/.exec(stdout)?.[1])).toBeGreaterThan(1.5)
}, 60_000)

test('the parallel benchmark prints the four scenarios, each faster in parallel', async () => {
  const { code, stdout, stderr } = await collect(
    spawnTs('examples/parallel-benchmark/main.ts', [], { COHORT_DEMO_SCALE: '0.2', OPENAI_API_KEY: '' }),
  )
  expect(code, stderr).toBe(0)
  const rows = stdout.split('\n').filter((line) => /^\| (3 indep|2 indep|With 1)/.test(line))
  expect(rows).toHaveLength(4)
  for (const row of rows) expect(Number(/([\d.]+)× \|$/.exec(row)?.[1])).toBeGreaterThan(1)
  // A table whose columns line up: every line of it as long as its header.
  const table = stdout.split('\n').filter((line) => line.startsWith('|'))
  expect(new Set(table.map((line) => line.length)).size).toBe(1)
  expect(stderr).toMatch(/"stuck":"fallback: no data"/)
}, 60_000)

test('the process agents example runs three commands at once and reports the conflict', async () => {
  const { code, stdout, stderr } = await collect(
    spawnTs('examples/process-agents/main.ts', [], { COHORT_DEMO_SCALE: '0.2' }),
  )
  expect(code, stderr).toBe(0)
  expect(stdout).toMatch(/Conflicts: src\/auth.py \(cohort-plan.review, cohort-plan.test\)/)
  expect(Number(/Speedup ([\d.]+)×/.exec(stdout)?.[1])).toBeGreaterThan(1.5)
}, 60_000)

test('the demo runs on a real endpoint when OPENAI_API_KEY is set', async () => {
  const api = await startOpenAIServer((request) => {
    const messages = request.body.messages ?? []
    const tools = (request.body.tools ?? []).map(
      (tool) => (tool as { function: { name: string } }).function.name,
    )
    if (tools.includes('launch_subagents')) {
      if (messages.length === 2) {
        const agents = [0.1, 0.3].map((seconds, index) => ({
          agent: 'worker',
          task: `Sleep for ${seconds} seconds`,
          id: `w${index}`,
        }))
        return {
          json: completion({
            toolCalls: [
              { name: 'launch_subagents', arguments: { agents } },
              { name: 'wait_for_subagents', arguments: {} },
            ],
          }),
        }
      }
      return {
        json: completion({ toolCalls: [{ name: 'finish', arguments: { result: 'both workers slept' } }] }),
      }
    }
    if (messages.length === 2) {
      const seconds = Number(/[\d.]+/.exec(messages[1]?.content ?? '')?.[0])
      return { json: completion({ toolCalls: [{ name: 'sleep', arguments: { seconds } }] }) }
    }
    return { json: completion({ content: '{"action": "finish", "result": "slept"}' }) }
  })
  const cwd = await mkdtemp(path.join(tmpdir(), 'cohort-demo-'))
  try {
    const env = {
      OPENAI_API_KEY: 'sk-local-test-key',
      OPENAI_BASE_URL: api.baseURL,
      COHORT_MODEL: 'local-model',
      INIT_CWD: cwd,
    }
    const { code, stdout, stderr } = await collect(
      spawnTs('examples/async-parallel-agents/main.ts', [], env, cwd),
    )
    expect(code, stderr).toBe(0)
    expect(stdout).toMatch(/Cohort demo on local-model/)
    expect(stdout).toMatch(/Result: "both workers slept"/)
    // The times of the workers the model launched (0.1 s and 0.3 s naps), not the offline script's 3 s and 8 s.
    const [, sum, longest] =
      /2 workers: one after the other would take ([\d.]+) s; the longest took ([\d.]+) s/.exec(stdout) ?? []
    expect(Number(longest)).toBeGreaterThanOrEqual(0.3)
    expect(Number(sum)).toBeGreaterThanOrEqual(0.4)
    expect(Number(sum)).toBeLessThan(3)
    expect(api.requests).toHaveLength(6)
    expect(api.requests.every((request) => request.body.model === 'local-model')).toBe(true)
  } finally {
    await api.close()
    await rm(cwd, { recursive: true, force: true })
  }
}, 60_000)

test('the demo on a model that finishes without launching workers says so, with no worker times', async () => {
  const api = await startOpenAIServer(() => ({
    json: completion({ toolCalls: [{ name: 'finish', arguments: { result: 'nothing to do' } }] }),
  }))
  const cwd = await mkdtemp(path.join(tmpdir(), 'cohort-demo-'))
  try {
    const env = { OPENAI_API_KEY: 'sk-local', OPENAI_BASE_URL: api.baseURL, COHORT_MODEL: 'm', INIT_CWD: cwd }
    const { code, stdout, stderr } = await collect(
      spawnTs('examples/async-parallel-agents/main.ts', [], env, cwd),
    )
    expect(code, stderr).toBe(0)
    expect(stdout).toMatch(/^Total time: [\d.]+ s \(the lead launched no workers\)$/m)
    expect(stdout).not.toMatch(/would take|longest/)
  } finally {
    await api.close()
    await rm(cwd, { recursive: true, force: true })
  }
}, 60_000)

test('the demo with a key the endpoint refuses says so in one line and exits 1, its logs written', async () => {
  const api = await startOpenAIServer(() => ({
    json: { error: { message: 'Incorrect API key provided', code: 'invalid_api_key' } },
    status: 401,
  }))
  const cwd = await mkdtemp(path.join(tmpdir(), 'cohort-demo-'))
  try {
    const env = { OPENAI_API_KEY: 'sk-bad', OPENAI_BASE_URL: api.baseURL, COHORT_MODEL: 'm', INIT_CWD: cwd }
    const { code, stderr } = await collect(spawnTs('examples/async-parallel-agents/main.ts', [], env, cwd))
    expect(code).toBe(1)
    expect(stderr).toMatch(
      /^The run failed: agent lead failed: model m: HTTP 401: Incorrect API key provided$/m,
    )
    expect(stderr).not.toMatch(/AgentFailedError|\n\s+at /)
    const logs = await readdir(path.join(cwd, '.cohort', 'logs'), { recursive: true })
    expect(logs.some((file) => file.endsWith('.log'))).toBe(true)
  } finally {
    await api.close()
    await rm(cwd, { recursive: true, force: true })
  }
}, 60_000)

test('the inspect example shows the run and every agent as XState actors, offline', async () => {
  const { code, stdout, stderr } = await collect(
    spawnTs('examples/inspect/main.ts', [], { OPENAI_API_KEY: '' }),
  )
  expect(code, stderr).toBe(0)
  for (const id of ['lead', 'lead.oslo', 'lead.lima']) expect(stdout).toMatch(new RegExp(`actor +${id}\\n`))
  expect(stdout).toMatch(/snapshot +lead +\{"suspended":"children"\}/)
  expect(stdout).toMatch(/run actor is now "completed"/)
  expect(stdout).toMatch(/Result: \["Weather in Oslo: mild","Weather in Lima: mild"\]/)
}, 60_000)

test('the inspect and research DAG examples, with a key the endpoint refuses, say so in one line and exit 1', async () => {
  const { api, env } = await refusingEndpoint()
  try {
    const inspect = await collect(spawnTs('examples/inspect/main.ts', [], env))
    expect(inspect.code).toBe(1)
    expect(inspect.stderr).toMatch(
      /^The run failed: agent lead failed: model m: HTTP 401: Incorrect API key provided$/m,
    )
    expect(inspect.stderr).not.toMatch(/AgentFailedError|\n\s+at /)
    // A plan's run completes with its failed steps as errors: no recommendation is a failure of the example.
    const dag = await collect(spawnTs('examples/research-dag/main.ts', [], env))
    expect(dag.code).toBe(1)
    expect(dag.stderr).toMatch(
      /^No recommendation: dependency "analysis" failed: dependency "research-\d" failed: model m: HTTP 401: Incorrect API key provided$/m,
    )
  } finally {
    await api.close()
  }
}, 60_000)

test('the parallel benchmark, with a key the endpoint refuses, says so in one line, prints no table and exits 1', async () => {
  const { api, env } = await refusingEndpoint()
  try {
    const { code, stdout, stderr } = await collect(spawnTs('examples/parallel-benchmark/main.ts', [], env))
    expect(code).toBe(1)
    expect(stderr).toMatch(
      /^The benchmark failed in "3 independent agents": step "memory" failed: model m: HTTP 401: Incorrect API key provided$/m,
    )
    // Times of steps that never ran are no speedup.
    expect(stdout).not.toMatch(/Speedup|×/)
  } finally {
    await api.close()
  }
}, 60_000)

/** A local OpenAI endpoint that refuses every key (401), and the environment pointing an example at it. */
async function refusingEndpoint() {
  const api = await startOpenAIServer(() => ({
    json: { error: { message: 'Incorrect API key provided', code: 'invalid_api_key' } },
    status: 401,
  }))
  const env = {
    OPENAI_API_KEY: 'sk-bad',
    OPENAI_BASE_URL: api.baseURL,
    COHORT_MODEL: 'm',
    COHORT_DEMO_SCALE: '0.2',
  }
  return { api, env }
}
