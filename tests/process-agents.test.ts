import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import {
  type CohortEvent,
  commandModel,
  createRuntime,
  defineAgent,
  type Run,
  type Runtime,
  scriptedModel,
  settledChildren,
} from '@cohort/core'
import { afterEach, beforeEach, describe, expect, test } from 'vitest'
import { collect, resultLine, spawnTs } from './support/processes.js'

let dir: string
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'cohort-process-'))
})
afterEach(async () => {
  await rm(dir, { recursive: true, force: true })
})

/** A process agent running a fixed shell script; the task arrives on stdin, never in the script. */
const shellAgent = (name: string, script: string, timeoutMs?: number) =>
  defineAgent({
    name,
    instructions: `Runs: ${script}`,
    model: commandModel({ command: 'sh', args: ['-c', script], ...(timeoutMs && { timeoutMs }) }),
  })

/** A lead that launches the given agents at once, waits, and finishes with every child result. */
function leadOver(launches: { agent: string; id: string; task?: string }[]) {
  const lead = defineAgent({ name: 'lead', instructions: '', subagents: launches.map((l) => l.agent) })
  const model = scriptedModel({
    lead: [
      { action: 'launch_subagents', agents: launches.map((l) => ({ task: 'go', ...l })) },
      { action: 'wait_for_subagents' },
      (request) => ({ action: 'finish', result: settledChildren(request) }),
    ],
  })
  return { lead, model }
}

/** Runs the lead over auth.py; the security and tests agents both changed it, as its event and the run's metrics say. */
async function expectAuthConflict(runtime: Runtime): Promise<Run> {
  const run = runtime.start('lead', 'review auth.py')
  const reported: CohortEvent[] = []
  run.on('workspace.conflicts', (e) => reported.push(e))
  await run.result
  const conflicts = [{ file: 'auth.py', agents: ['lead.security', 'lead.tests'] }]
  expect(reported).toMatchObject([{ agentId: 'lead', conflicts }])
  expect(run.metrics().conflicts).toEqual(conflicts)
  return run
}

describe('process agents', () => {
  test('run in parallel, each in its own workspace, with stdout as the result', async () => {
    const agents = ['one', 'two', 'three'].map((name) =>
      shellAgent(name, `sleep 0.4; echo "$(cat) from $(basename "$PWD")" > out.txt; ls; cat out.txt`),
    )
    const { lead, model } = leadOver(
      agents.map((a) => ({ agent: a.name, id: a.name, task: `task for ${a.name}` })),
    )
    const runtime = createRuntime({
      agents: [lead, ...agents],
      model,
      workspaces: { root: path.join(dir, 'ws') },
    })
    const run = runtime.start('lead', 'go')
    const events: CohortEvent[] = []
    run.on('event', (e) => events.push(e))
    const results = (await run.result) as { id: string; result: string }[]
    // Isolation: each listing shows only its own out.txt, in its own directory.
    expect(results.map((r) => r.result)).toEqual([
      'out.txt\ntask for one from lead.one',
      'out.txt\ntask for two from lead.two',
      'out.txt\ntask for three from lead.three',
    ])
    expect(await readFile(path.join(dir, 'ws', run.id, 'lead.two', 'out.txt'), 'utf8')).toBe(
      'task for two from lead.two\n',
    )
    // All three commands were running before any finished.
    const starts = events
      .filter((e) => e.type === 'model.started' && e.agentId !== 'lead')
      .map((e) => events.indexOf(e))
    const firstDone = events.findIndex((e) => e.type === 'model.completed' && e.agentId !== 'lead')
    expect(Math.max(...starts)).toBeLessThan(firstDone)
    const metrics = run.metrics()
    expect(metrics.speedup).toBeGreaterThan(1.5)
    // Exit code, stderr tail and duration are in the agent's record.
    const record = (await run.snapshot()).agents.find((a) => a.id === 'lead.one')!
    expect(record.snapshot.context.processes[0]).toMatchObject({ exitCode: 0, command: 'sh', turn: 0 })
    expect(record.snapshot.context.processes[0]!.durationMs).toBeGreaterThanOrEqual(380)
  })

  test('an answer in plain text that holds JSON which is not actions is the result, as it is', async () => {
    const answers = {
      list: 'The three largest files are: [1, 2, 3]',
      findings: 'Found these issues:\n[{"file": "a.ts", "line": 3}]',
      object: 'Summary: {"passed": 10, "failed": 0}',
      // An "action" key names no action of the protocol: an audit log, not a reply to act on.
      audit: 'Audit log: [{"action": "login", "user": "ann"}]',
      deploy: 'Last event: {"action": "deploy"}',
    }
    for (const [name, text] of Object.entries(answers)) {
      const agent = shellAgent(name, `printf '%s' '${text.replaceAll("'", "'\\''")}'`)
      const runtime = createRuntime({
        agents: [agent],
        limits: { maxRepairs: 0 },
        workspaces: { root: path.join(dir, 'ws') },
      })
      expect(await runtime.run(name, 'go'), name).toBe(text)
    }
  })

  test('files changed by more than one agent against the common base are reported as conflicts', async () => {
    const base = path.join(dir, 'base')
    await mkdir(base)
    await writeFile(path.join(base, 'auth.py'), 'def login(): pass\n')
    await writeFile(path.join(base, 'README.md'), '# app\n')
    const agents = [
      shellAgent('security', 'echo "# checked" >> auth.py; echo reviewed'),
      shellAgent('tests', 'echo "# tested" >> auth.py; echo "def test(): pass" > test_auth.py; echo tested'),
      shellAgent('docs', 'echo "more" >> README.md; echo documented'),
    ]
    const { lead, model } = leadOver(agents.map((a) => ({ agent: a.name, id: a.name })))
    const runtime = createRuntime({
      agents: [lead, ...agents],
      model,
      workspaces: { root: path.join(dir, 'ws'), base },
    })
    const run = await expectAuthConflict(runtime)
    const lead0 = (await run.snapshot()).agents.find((a) => a.id === 'lead')!
    expect(lead0.snapshot.context.messages.at(-2)?.content).toMatch(
      /Conflicts \(files changed by more than one of them\)/,
    )
    // The base itself is untouched.
    expect(await readFile(path.join(base, 'auth.py'), 'utf8')).toBe('def login(): pass\n')

    // The base changed between two runs of one runtime (a server's): the next run compares against it as it is now.
    await writeFile(path.join(base, 'README.md'), '# app, renamed\n')
    const next = runtime.start('lead', 'review auth.py again')
    await next.result
    expect(next.metrics().conflicts).toEqual(run.metrics().conflicts)
  })

  test('a lead that waits for its children one at a time is told of a file two of them changed', async () => {
    const base = path.join(dir, 'base')
    await mkdir(base)
    await writeFile(path.join(base, 'auth.py'), 'def login(): pass\n')
    const agents = [
      shellAgent('security', 'echo "# checked" >> auth.py; echo reviewed'),
      shellAgent('tests', 'echo "# tested" >> auth.py; echo tested'),
    ]
    const lead = defineAgent({ name: 'lead', instructions: '', subagents: ['security', 'tests'] })
    const model = scriptedModel({
      lead: [
        {
          action: 'launch_subagents',
          agents: agents.map((a) => ({ agent: a.name, id: a.name, task: 'go' })),
        },
        { action: 'wait_for_subagents', ids: ['security'] },
        { action: 'wait_for_subagents', ids: ['tests'] },
        { action: 'finish', result: 'done' },
      ],
    })
    const runtime = createRuntime({
      agents: [lead, ...agents],
      model,
      workspaces: { root: path.join(dir, 'ws'), base },
    })
    await expectAuthConflict(runtime)
  })

  test('a command past its timeout fails with its process tree killed; a crashing command is isolated', async () => {
    const pidFile = path.join(dir, 'grandchild.pid')
    const agents = [
      shellAgent('hang', `sleep 30 & echo $! > ${pidFile}; wait`, 300),
      shellAgent('crash', 'echo "fatal: repository not found" >&2; exit 3'),
      shellAgent('fine', 'echo ok'),
    ]
    const { lead, model } = leadOver(agents.map((a) => ({ agent: a.name, id: a.name })))
    const runtime = createRuntime({
      agents: [lead, ...agents],
      model,
      workspaces: { root: path.join(dir, 'ws') },
    })
    const results = (await runtime.run('lead', 'go')) as {
      id: string
      status: string
      result?: string
      error?: { message: string }
    }[]
    expect(results.find((r) => r.id === 'fine')).toMatchObject({ status: 'completed', result: 'ok' })
    expect(results.find((r) => r.id === 'crash')?.error?.message).toMatch(
      /command sh exited with code 3: fatal: repository not found/,
    )
    expect(results.find((r) => r.id === 'hang')?.error?.message).toMatch(
      /timed out after 300 ms; its process tree was killed/,
    )
    const grandchild = Number(await readFile(pidFile, 'utf8'))
    await new Promise((resolve) => setTimeout(resolve, 100))
    expect(await isRunning(grandchild)).toBe(false)
  })

  test('a failed process-agent turn leaves a record: exit code, signal, stderr tail, duration and busy time', async () => {
    const agents = [
      shellAgent('crash', 'sleep 0.2; echo boom >&2; exit 3'),
      shellAgent('killed', 'kill -TERM $$'),
    ]
    const { lead, model } = leadOver(agents.map((a) => ({ agent: a.name, id: a.name })))
    const runtime = createRuntime({
      agents: [lead, ...agents],
      model,
      workspaces: { root: path.join(dir, 'ws') },
    })
    const run = runtime.start('lead', 'go')
    const failures: Extract<CohortEvent, { type: 'model.failed' }>[] = []
    run.on('model.failed', (event) => failures.push(event))
    const results = (await run.result) as { id: string; status: string; error?: { message: string } }[]
    // The event says how the process ended too.
    expect(failures.find((event) => event.agentId === 'lead.crash')).toMatchObject({
      process: { exitCode: 3, stderrTail: 'boom\n' },
    })
    // The failure still fails the agent, as before.
    expect(results.find((r) => r.id === 'crash')).toMatchObject({
      status: 'failed',
      error: { message: expect.stringMatching(/command sh exited with code 3: boom/) },
    })
    expect(results.find((r) => r.id === 'killed')?.error?.message).toMatch(/exited with signal SIGTERM/)
    const { agents: records } = await run.snapshot()
    const crash = records.find((a) => a.id === 'lead.crash')!
    expect(crash.status).toBe('failed')
    expect(crash.snapshot.context.processes).toEqual([
      expect.objectContaining({ turn: 0, command: 'sh', exitCode: 3, signal: null, stderrTail: 'boom\n' }),
    ])
    expect(crash.snapshot.context.processes[0]!.durationMs).toBeGreaterThanOrEqual(180)
    expect(crash.snapshot.context.busyMs).toBeGreaterThanOrEqual(180)
    const killed = records.find((a) => a.id === 'lead.killed')!
    expect(killed.snapshot.context.processes).toEqual([
      expect.objectContaining({ exitCode: null, signal: 'SIGTERM' }),
    ])
    expect(run.metrics().perAgent.find((a) => a.id === 'lead.crash')?.busyMs).toBeGreaterThanOrEqual(180)
  })

  test('a follow-up turn of the same agent runs in the same workspace', async () => {
    const script = [
      'echo "turn $COHORT_TURN in $PWD" >> turns.log',
      'if [ "$COHORT_TURN" = 0 ]; then echo \'{"action":"wait_for_subagents"}\'; else cat turns.log; fi',
    ].join('; ')
    const agent = shellAgent('twice', script)
    const runtime = createRuntime({ agents: [agent], workspaces: { root: path.join(dir, 'ws') } })
    const result = (await runtime.run('twice', 'go')) as string
    const lines = result.split('\n')
    expect(lines).toHaveLength(2)
    expect(lines[0]).toMatch(/^turn 0 in .*twice$/)
    expect(lines[1]).toBe(lines[0]!.replace('turn 0', 'turn 1'))
  })

  test('a run killed while a command runs resumes and finishes it; the command the killed process left running is stopped first', async () => {
    const storeDir = path.join(dir, 'store')
    const wsRoot = path.join(dir, 'ws')
    const first = spawnTs('tests/fixtures/process-scenario.ts', ['start', storeDir, wsRoot, 'proc-1'])
    await collect(first, (line) => {
      if (line === 'event model.started lead.job') setTimeout(() => first.kill('SIGKILL'), 200)
    })
    const second = await collect(
      spawnTs('tests/fixtures/process-scenario.ts', ['resume', storeDir, wsRoot, 'proc-1']),
    )
    expect(second.code, second.stderr).toBe(0)
    expect(resultLine(second.stdout)).toBe('finished after 2 start(s)')
    // Longer than the first command had left to run: had it run on beside the second, it would
    // have finished too, in the same workspace.
    await new Promise((resolve) => setTimeout(resolve, 3_200))
    const log = await readFile(path.join(wsRoot, 'proc-1', 'lead.job', 'runs.log'), 'utf8')
    expect(log.trim().split('\n')).toEqual(['started', 'started', 'finished'])
  })
})

/** Alive and not a zombie (a killed process whose new parent has not reaped it yet). */
async function isRunning(pid: number): Promise<boolean> {
  try {
    const status = await readFile(`/proc/${pid}/status`, 'utf8')
    return !/^State:\s+Z/m.test(status)
  } catch {
    return false
  }
}

test('a command that reports its usage and cost counts them (readOutput); one that does not is estimated, so token budgets hold', async () => {
  // As a coding assistant's JSON output: the answer, with what the call used and cost.
  const envelope =
    '{"result":"fixed it","usage":{"input_tokens":1200,"output_tokens":300},"total_cost_usd":0.021}'
  const reporting = defineAgent({
    name: 'reporting',
    instructions: '',
    model: commandModel({
      command: 'sh',
      args: ['-c', `cat > /dev/null; printf '%s' '${envelope}'`],
      readOutput: ({ stdout }) => {
        const out = JSON.parse(stdout)
        return {
          text: out.result,
          usage: { promptTokens: out.usage.input_tokens, completionTokens: out.usage.output_tokens },
          cost: out.total_cost_usd,
        }
      },
    }),
  })
  const silent = shellAgent('silent', `cat > /dev/null; printf '%s' '${'x'.repeat(400)}'`)
  const runtime = createRuntime({ agents: [reporting, silent], workspaces: { root: path.join(dir, 'ws') } })
  const run = runtime.start('reporting', 'fix the bug')
  expect(await run.result).toBe('fixed it')
  expect(run.metrics()).toMatchObject({ tokens: { prompt: 1200, completion: 300, total: 1500 }, cost: 0.021 })

  const estimated = runtime.start('silent', 'go')
  const completed: CohortEvent[] = []
  estimated.on('model.completed', (e) => completed.push(e))
  expect(await estimated.result).toBe('x'.repeat(400))
  expect(completed).toMatchObject([{ usageEstimated: true }])
  expect(estimated.metrics().tokens.completion).toBeGreaterThanOrEqual(100)

  // A budget smaller than one turn's estimate stops a process agent as it stops any other.
  const budgeted = createRuntime({
    agents: [silent],
    limits: { maxRunTokens: 10 },
    workspaces: { root: path.join(dir, 'ws2') },
  })
  await expect(budgeted.run('silent', 'go')).rejects.toThrow(/maxRunTokens/)
})

test('a readOutput that throws, returns what is not an output, or a promise, fails the turn naming it', async () => {
  const agentWith = (name: string, readOutput: () => unknown) =>
    defineAgent({
      name,
      instructions: '',
      model: commandModel({ command: 'sh', args: ['-c', 'cat > /dev/null; echo done'], readOutput } as never),
    })
  const runtime = createRuntime({
    agents: [
      agentWith('throws', () => JSON.parse('not json')),
      agentWith('wrong', () => ({ usage: { promptTokens: -1 } })),
      agentWith('later', async () => ({ text: 'too late' })),
    ],
    workspaces: { root: path.join(dir, 'ws') },
  })
  await expect(runtime.run('throws', 'go')).rejects.toThrow(/readOutput of command sh threw: .*JSON/)
  await expect(runtime.run('later', 'go')).rejects.toThrow(
    /readOutput of command sh returned a promise; it must return/,
  )
  await expect(runtime.run('wrong', 'go')).rejects.toThrow(
    /readOutput of command sh returned usage\.promptTokens: .*expected \{ text\?: string, usage\?/,
  )
})

test("a secret a command prints to stderr is redacted in the process record kept in the agent's context", async () => {
  const agents = [
    shellAgent('leaky', 'echo "using sk-secret-123" >&2; echo done'),
    shellAgent('crashy', 'echo "key sk-secret-123 refused" >&2; exit 3'),
  ]
  const { lead, model } = leadOver(agents.map((a) => ({ agent: a.name, id: a.name })))
  const runtime = createRuntime({
    agents: [lead, ...agents],
    model,
    secrets: ['sk-secret-123'],
    workspaces: { root: path.join(dir, 'ws') },
  })
  const run = runtime.start('lead', 'go')
  const failures: string[] = []
  run.on('model.failed', (event) => failures.push(event.process?.stderrTail ?? ''))
  await run.result
  const { agents: records } = await run.snapshot()
  const tails = records.flatMap((record) => record.snapshot.context.processes.map((p) => p.stderrTail))
  expect(tails).toHaveLength(2)
  for (const tail of [...tails, ...failures]) {
    expect(tail).not.toContain('sk-secret-123')
    expect(tail).toContain('[redacted]')
  }
})

test('a command that prints without end is stopped past the longest reply; text split across reads stays whole; base links stay links', async () => {
  const flood = shellAgent('flood', 'yes')
  const accents = shellAgent('accents', `node -e "process.stdout.write('a' + 'é'.repeat(90000))"`)
  const base = path.join(dir, 'base')
  await mkdir(path.join(base, 'sub'), { recursive: true })
  await writeFile(path.join(base, 'sub', 'file.txt'), 'base\n')
  await symlink('sub/file.txt', path.join(base, 'rel-link'))
  const writer = shellAgent('writer', 'echo mine >> rel-link; echo wrote')
  const runtime = createRuntime({
    agents: [flood, accents, writer],
    limits: { maxRepairs: 0 },
    workspaces: { root: path.join(dir, 'ws'), base },
  })
  const flooded = runtime.start('flood', 'go')
  await expect(flooded.result).rejects.toThrow(/printed more than 200000 characters/)
  // Its failed turn is kept as any other: killed, with its duration.
  const [record] = (await flooded.snapshot()).agents
  expect(record?.snapshot.context.processes).toEqual([
    expect.objectContaining({ turn: 0, command: 'sh', exitCode: null, signal: 'SIGKILL' }),
  ])
  expect(await runtime.run('accents', 'go')).toBe(`a${'é'.repeat(90000)}`)
  const crlf = createRuntime({
    agents: [shellAgent('crlf', `printf 'line1\\r\\nline2\\r\\n'`)],
    workspaces: { root: path.join(dir, 'ws') },
  })
  expect(await crlf.run('crlf', 'go')).toBe('line1\nline2')
  expect(await runtime.run('writer', 'go')).toBe('wrote')
  // The link in the workspace points into the workspace: the base is as it was.
  expect(await readFile(path.join(base, 'sub', 'file.txt'), 'utf8')).toBe('base\n')
})

test('a command that exits while something it started in the background keeps its output open ends its turn when it exits, and what it left running ends with it', async () => {
  const daemon = defineAgent({
    name: 'daemon',
    instructions: '',
    model: commandModel({
      command: 'sh',
      args: ['-c', 'sleep 30 & echo $! > sleeper.pid; echo started'],
      timeoutMs: 20_000,
    }),
  })
  const root = path.join(dir, 'ws')
  const runtime = createRuntime({ agents: [daemon], workspaces: { root } })
  const begun = performance.now()
  const run = runtime.start('daemon', 'go')
  expect(await run.result).toBe('started')
  // It waited for the background sleep (30 s) or for its timeout (20 s) before.
  expect(performance.now() - begun).toBeLessThan(10_000)
  const sleeper = Number(await readFile(path.join(root, run.id, 'daemon', 'sleeper.pid'), 'utf8'))
  await expect.poll(() => isRunning(sleeper)).toBe(false)
})

test('a prompt too long for a command line fails the turn with a clear error, not a raw E2BIG', async () => {
  const echo = defineAgent({
    name: 'echo',
    instructions: '',
    model: commandModel({ command: 'echo', args: ['{prompt}'], input: 'argument' }),
  })
  const runtime = createRuntime({ agents: [echo], workspaces: { root: path.join(dir, 'ws') } })
  await expect(runtime.run('echo', 'x'.repeat(3_000_000))).rejects.toThrow(
    /cannot start command echo: .*E2BIG.*: its arguments are too long for the system; give the prompt on stdin/,
  )
})
