// Three command-line agents at once, each in its own copy of a small project, then a
// conflict report: which files more than one of them changed. The commands are ordinary
// shell scripts, so this runs offline; swap in a coding assistant's CLI to do real work.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { commandModel, createLogger, createRuntime, defineAgent, type Plan } from '@cohort/core'

const scale = Number(process.env.COHORT_DEMO_SCALE ?? 1)
const work = (seconds: number) => String(Math.round(seconds * scale * 1000) / 1000)

const base = await mkdtemp(path.join(tmpdir(), 'cohort-base-'))
await mkdir(path.join(base, 'src'))
await writeFile(path.join(base, 'src', 'auth.py'), 'def login(user, password):\n    return True\n')
await writeFile(path.join(base, 'README.md'), '# demo service\n')

/** Each agent reads its task on stdin, edits its own workspace, and prints a one-line report. */
const agent = (name: string, script: string) =>
  defineAgent({ name, instructions: script, model: commandModel({ command: 'sh', args: ['-c', script] }) })

const reviewer = agent(
  'reviewer',
  `sleep ${work(1.5)}; echo "# TODO: rate-limit logins" >> src/auth.py; echo "review: $(cat) — 1 finding"`,
)
const tester = agent(
  'tester',
  `sleep ${work(2)}; printf 'def test_login():\\n    assert login("a", "b")\\n' > src/test_auth.py; echo "# tested" >> src/auth.py; echo "tests: $(cat) — 1 test written"`,
)
const documenter = agent(
  'documenter',
  `sleep ${work(1)}; echo "## Login" >> README.md; echo "docs: $(cat) — README updated"`,
)

const workspaceRoot = `${base}-workspaces`
const runtime = createRuntime({
  agents: [reviewer, tester, documenter],
  workspaces: { root: workspaceRoot, base },
  logger: createLogger({ colors: process.stdout.isTTY }),
})

const plan: Plan = {
  agents: [
    { id: 'review', agent: 'reviewer', task: 'security review of src/auth.py' },
    { id: 'test', agent: 'tester', task: 'unit tests for src/auth.py' },
    { id: 'docs', agent: 'documenter', task: 'document the login flow' },
  ],
}

// One at a time first, then all at once, in this same process.
const sequentialStart = performance.now()
for (const step of plan.agents) await runtime.runPlan({ agents: [step] }).result
const sequentialMs = performance.now() - sequentialStart

const run = runtime.runPlan(plan)
const result = await run.result
const metrics = run.metrics()

console.log('\nResults:', JSON.stringify(result, null, 2))
console.log(
  `\nSequential ${(sequentialMs / 1000).toFixed(2)} s, parallel ${(metrics.wallMs / 1000).toFixed(2)} s`,
)
console.log(
  `Speedup ${(sequentialMs / metrics.wallMs).toFixed(2)}× (busy ÷ wall ${metrics.speedup}), efficiency ${metrics.efficiency}`,
)
console.log(
  metrics.conflicts.length === 0
    ? 'No conflicts.'
    : `Conflicts: ${metrics.conflicts.map((c) => `${c.file} (${c.agents.join(', ')})`).join('; ')}`,
)

await rm(base, { recursive: true, force: true })
await rm(workspaceRoot, { recursive: true, force: true })
