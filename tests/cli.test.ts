import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { Writable } from 'node:stream'
import { main, type RunView } from '@cohort/cli'
import { fileStore, type RunStatus } from '@cohort/core'
import pg from 'pg'
import { afterEach, beforeEach, describe, expect, test } from 'vitest'
import { completion, startOpenAIServer } from '../packages/openai/test/openai-server.js'
import { collect, repoRoot, spawnTs } from './support/processes.js'
import { makeRunRecord } from './support/run-store-conformance.js'
import { waitUntil } from './support/scripts.js'

const databaseUrl = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
const postgres = await (async () => {
  const client = new pg.Client({ connectionString: databaseUrl, connectionTimeoutMillis: 2_000 })
  try {
    await client.connect()
    return { enabled: true, unreachable: '' }
  } catch (error) {
    // On CI a missing database is a failure: the test runs and fails rather than skip.
    return {
      enabled: process.env.CI === 'true',
      unreachable: `PostgreSQL unreachable (${(error as Error).message})`,
    }
  } finally {
    await client.end().catch(() => {})
  }
})()

const config = path.join(repoRoot, 'tests/fixtures/cli-config.ts')
let cwd: string
beforeEach(async () => {
  cwd = await mkdtemp(path.join(tmpdir(), 'cohort-cli-'))
})
afterEach(async () => {
  await rm(cwd, { recursive: true, force: true })
})

const cohort = (args: string[], env: Record<string, string> = {}) =>
  spawnTs('packages/cli/src/bin.ts', args, { NO_COLOR: '1', ...env }, cwd)
const run = (args: string[], env: Record<string, string> = {}) => collect(cohort(args, env))
/**
 * Runs the CLI until it has said `times` times that an agent waits on a person, then presses
 * Ctrl-C; after `timeoutMs` it presses Ctrl-C anyway (a command that never says it).
 */
const untilWaiting = async (args: string[], times = 1, timeoutMs = 20_000) => {
  const child = cohort(args)
  let said = ''
  // Pressed once: a second Ctrl-C, after the first has stored the run, would kill the process.
  const stop = () => {
    if (child.exitCode === null && !child.killed) child.kill('SIGINT')
  }
  const timer = setTimeout(stop, timeoutMs)
  child.stderr?.on('data', (chunk: Buffer) => {
    said += chunk
    if ((said.match(/ waits for .*: Ctrl-C, then /g) ?? []).length >= times) stop()
  })
  const out = await collect(child)
  clearTimeout(timer)
  return { code: out.code, said, stdout: out.stdout }
}
const twoWaiting = path.join(repoRoot, 'tests/fixtures/cli-two-waiting-config.ts')

describe('cohort CLI', () => {
  test('a program of its own named main that imports @cohort/cli does not run the cohort command', async () => {
    const program = await collect(
      spawnTs('tests/fixtures/imports-cli/main.ts', ['ls'], { NO_COLOR: '1' }, cwd),
    )
    expect(program.code, program.stderr).toBe(0)
    expect(program.stdout).toBe('imported startServer: function\n')
  })

  test('every command has --help; bad flags and commands exit 2 with a clear error', async () => {
    const commands = [
      'run',
      'parallel',
      'ls',
      'show',
      'resume',
      'approve',
      'reject',
      'answer',
      'cancel',
      'logs',
      'prune',
      'serve',
    ]
    const helps = await Promise.all(commands.map((command) => run([command, '--help'])))
    for (const [index, help] of helps.entries()) {
      expect(help.code, commands[index]).toBe(0)
      expect(help.stdout).toMatch(new RegExp(`Usage: cohort ${commands[index]}`))
    }
    const badFlag = await run(['ls', '--colour'])
    expect(badFlag.code).toBe(2)
    expect(badFlag.stderr).toMatch(/unknown option '--colour'/)
    const badValue = await run(['ls', '--limit', 'ten'])
    expect(badValue.code).toBe(2)
    expect(badValue.stderr).toMatch(/--limit must be a positive integer, got "ten"/)
    const badStatus = await run(['ls', '--status', 'done'])
    expect(badStatus.stderr).toMatch(/--status "done" is not one of running, completed, failed, cancelled/)
    const badCommand = await run(['launch'])
    expect(badCommand.code).toBe(2)
    expect(badCommand.stderr).toMatch(/unknown command 'launch'/)
    const badId = await run(['show', '../etc'])
    expect(badId.code).toBe(2)
    expect(badId.stderr).toMatch(/invalid run id/)
    const missing = await run(['run', path.join(cwd, 'nope.ts')])
    expect(missing.code).toBe(2)
    expect(missing.stderr).toMatch(/config .*nope\.ts: no such file/)
    const noSuchAgent = await run(['run', config, '--agent', 'nosuch', '--run-id', 'never'])
    expect(noSuchAgent.code).toBe(2)
    expect(noSuchAgent.stderr).toMatch(
      /--agent "nosuch" is not an agent of the config; its agents: lead, worker/,
    )
    // Nothing is left behind for a run that never started.
    expect(await readdir(path.join(cwd, '.cohort', 'launches')).catch(() => [])).not.toContain('never.json')
    // Twenty CLI processes, each loading its TypeScript: about 35 s on two busy cores.
  }, 120_000)

  test('misuses are refused saying what was wrong and what was expected', async () => {
    // An empty --status (an unset shell variable) is refused rather than listing every run.
    const emptyStatus = await run(['ls', '--status', ''])
    expect(emptyStatus.code).toBe(2)
    expect(emptyStatus.stderr).toMatch(/--status "" is not one of running, completed, failed, cancelled/)
    await writeFile(path.join(cwd, 'afile'), '')
    const fileDir = await run(['--dir', 'afile', 'ls'])
    expect(fileDir.code).toBe(2)
    expect(fileDir.stderr).toMatch(
      /the cohort folder afile \(--dir or COHORT_DIR\) is a file; expected a folder/,
    )
    // A store that cannot be reached is the environment's, not a failed run (exit 1): exit 2, saying where.
    const unreachable = await run(['--store', 'postgres://127.0.0.1:1/x', 'ls'])
    expect(unreachable.code).toBe(2)
    expect(unreachable.stderr).toMatch(/^cohort: postgres store \(127\.0\.0\.1:1\/x, .*ECONNREFUSED/m)
    // Before a run starts, too: said as the store's, not as a failed run, and nothing left behind.
    for (const id of [[], ['--run-id', 'mine']]) {
      const unstored = await run(['--store', 'postgres://127.0.0.1:1/x', 'run', config, ...id])
      expect(unstored.code, unstored.stdout).toBe(2)
      expect(unstored.stderr).toMatch(/^cohort: postgres store \(127\.0\.0\.1:1\/x, .*ECONNREFUSED/m)
      expect(unstored.stderr).not.toMatch(/already exists|failed/)
    }
    expect(await readdir(path.join(cwd, '.cohort', 'launches')).catch(() => [])).toEqual([])
    const helpUnknown = await run(['help', 'nope'])
    expect(helpUnknown.code).toBe(2)
    expect(helpUnknown.stderr).toMatch(/unknown command "nope"; expected one of run, parallel, ls/)
    // Help that helps succeeds.
    const help = await run(['help', 'ls'])
    expect(help.code, help.stderr).toBe(0)
    expect(help.stdout).toMatch(/Usage: cohort ls/)
  }, 60_000)

  test('a config that is not there, or is a folder, is refused saying so, not as a module the CLI failed to import', async () => {
    await mkdir(path.join(cwd, 'configs'))
    for (const [given, said] of [
      ['nope.ts', `cohort: config nope.ts: no such file (looked for ${path.join(cwd, 'nope.ts')})\n`],
      ['nope.json', `cohort: config nope.json: no such file (looked for ${path.join(cwd, 'nope.json')})\n`],
      ['configs', 'cohort: config configs is a folder; expected a config file (.js, .mjs, .ts or .json)\n'],
    ]) {
      for (const command of ['run', 'serve']) {
        const refused = await run([command, given!])
        expect(refused.code, refused.stdout).toBe(2)
        expect(refused.stderr).toBe(said)
      }
    }
  }, 60_000)

  test('an empty COHORT_DIR (as a .env template leaves it) is the default .cohort, not the current folder', async () => {
    const out = await run(['parallel', 'echo hi', '--command', 'sh', '--run-id', 'empty-dir'], {
      COHORT_DIR: '',
    })
    expect(out.code, out.stderr).toBe(0)
    expect(await readdir(path.join(cwd, '.cohort', 'runs'))).toEqual(['empty-dir'])
    expect(await readdir(cwd)).toEqual(['.cohort'])
  }, 60_000)

  test("parallel whose tasks fail says how many, and exits 1; show --json gives each task's process", async () => {
    const out = await run(['parallel', 'exit 3 AND echo done >&2', '--command', 'sh', '--run-id', 'tasks'])
    expect(out.code).toBe(1)
    expect(out.stdout).toMatch(/\| task-1 \| failed \| .* \| error: .*exited with code 3/)
    expect(out.stderr).toMatch(/1 task failed\./)
    // For a script: each task's exit code, stderr tail, duration and workspace.
    const shown = JSON.parse((await run(['show', 'tasks', '--json'])).stdout) as RunView
    const tasks = shown.agents.filter((agent) => agent.depth === 1)
    expect(
      tasks.map((agent) => agent.processes?.map(({ exitCode, stderrTail }) => ({ exitCode, stderrTail }))),
    ).toEqual([[{ exitCode: 3, stderrTail: '' }], [{ exitCode: 0, stderrTail: 'done\n' }]])
    expect(tasks[0]!.processes![0]!.workspace).toMatch(/tasks[/\\]cohort-plan\.task-1$/)
  }, 60_000)

  test('parallel --command that cannot run is refused before anything is stored', async () => {
    await mkdir(path.join(cwd, 'folder'))
    await writeFile(path.join(cwd, 'plain.sh'), 'echo hi\n', { mode: 0o644 })
    for (const [command, why] of [
      ['./nonexist', /--command \.\/nonexist: no such file \(looked for .*\/nonexist\)/],
      ['./folder', /--command \.\/folder is a folder; expected a program/],
      ['./plain.sh', /--command \.\/plain\.sh is not executable/],
      ['', /--command is empty; expected a program/],
      ['no-such-program-here', /--command no-such-program-here: no such program on PATH/],
    ] as const) {
      const refused = await run(['parallel', 'a AND b', '--command', command])
      expect(refused.code, refused.stdout).toBe(2)
      expect(refused.stderr).toMatch(why)
    }
    expect(await readdir(cwd)).not.toContain('.cohort')
  }, 60_000)

  test('run, then ls, show and logs read the stored run', async () => {
    const started = await run(['run', config, '--run-id', 'first'])
    expect(started.code, started.stderr).toBe(0)
    expect(started.stdout).toMatch(/AGENT lead suspended, waiting on a, b/)
    expect(started.stdout).toMatch(/Result: \[\s+"a:nap done",\s+"b:nap done"\s+\]/)
    expect(started.stdout).toMatch(/speedup [\d.]+×, efficiency [\d.]+; 3 completed, 0 failed/)

    const again = await run(['run', config, '--run-id', 'first'])
    expect(again.code).toBe(2)
    expect(again.stderr).toMatch(/run first already exists: `cohort resume first`, or pick another --run-id/)

    const ls = await run(['ls'])
    expect(ls.stdout).toMatch(/^first\s+completed\s+\S+ \S+\s+lead: two naps$/m)
    const show = await run(['show', 'first'])
    expect(show.code).toBe(0)
    expect(show.stdout).toMatch(/^Run first {2}completed/)
    expect(show.stdout).toMatch(/^✔ lead {2}completed/m)
    expect(show.stdout).toMatch(/^ {2}✔ worker lead\.a {2}completed\s+\d+ ms {2}→ nap done$/m)
    expect(show.stdout).toMatch(/^ {2}✔ worker lead\.b /m)
    const json = JSON.parse((await run(['show', 'first', '--json'])).stdout)
    expect(json.agents.map((agent: { id: string }) => agent.id)).toEqual(['lead', 'lead.a', 'lead.b'])

    const logs = await run(['logs', 'first', '--agent', 'lead.a'])
    expect(logs.stdout).toMatch(/\[TOOL\] lead\.a → sleep/)
    expect(logs.stdout).not.toMatch(/lead\.b/)
    const all = await run(['logs', 'first'])
    expect(all.stdout).toMatch(/lead\.a/)
    expect(all.stdout).toMatch(/lead\.b/)
    const noAgent = await run(['logs', 'first', '--agent', 'nobody'])
    expect(noAgent.code).toBe(2)
    expect(noAgent.stderr).toMatch(/no log for agent "nobody"; agents: /)
  }, 60_000)

  test('show names the agent whose session a run continues', async () => {
    const store = fileStore(path.join(cwd, '.cohort', 'runs'))
    const continuedFrom = { runId: 'first', agentId: 'lead' }
    await store.saveRun(makeRunRecord('next', { status: 'completed', result: 'ok', continuedFrom }))
    const show = await run(['show', 'next'])
    expect(show.code, show.stderr).toBe(0)
    expect(show.stdout).toMatch(
      /^Run next {2}completed {2}lead: do the thing\nContinues run first's agent lead\n/,
    )
  })

  test('show on a terminal colours the tree, unless NO_COLOR is set', async () => {
    const echo = path.join(cwd, 'echo.json')
    await writeFile(
      echo,
      JSON.stringify({
        agents: [{ name: 'echoer' }],
        model: { provider: 'command', command: 'sh', args: ['-c', 'echo done'] },
        task: 'hello',
      }),
    )
    expect((await run(['run', echo, '--run-id', 'tinted'])).code).toBe(0)
    /** `cohort show` in this process, its output a terminal. */
    const showOnTerminal = async () => {
      let text = ''
      const terminal = Object.assign(
        new Writable({
          write(chunk, _encoding, done) {
            text += chunk
            done()
          },
        }),
        { isTTY: true },
      ) as unknown as NodeJS.WriteStream
      const code = await main(['show', 'tinted', '--dir', path.join(cwd, '.cohort')], {
        out: terminal,
        err: terminal,
      })
      expect(code, text).toBe(0)
      return text
    }
    const saved = process.env.NO_COLOR
    try {
      delete process.env.NO_COLOR
      expect(await showOnTerminal()).toContain('\u001b[32m✔ echoer')
      process.env.NO_COLOR = '1'
      const plain = await showOnTerminal()
      expect(plain).toMatch(/^✔ echoer {2}completed/m)
      expect(plain).not.toContain('\u001b[')
    } finally {
      if (saved === undefined) delete process.env.NO_COLOR
      else process.env.NO_COLOR = saved
    }
  }, 60_000)

  test("a config's own store is where show, cancel and --run-id look for the runs it started", async () => {
    const config = path.join(cwd, 'kept.json')
    await writeFile(
      config,
      JSON.stringify({
        agents: [{ name: 'echoer', instructions: 'Echo.' }],
        model: { provider: 'command', command: 'sh', args: ['-c', 'echo done'] },
        task: 'hello',
        store: 'kept-runs',
      }),
    )
    const started = await run(['run', config, '--run-id', 'own'])
    expect(started.code, started.stderr).toBe(0)
    expect(await readdir(path.join(cwd, 'kept-runs'))).toContain('own')
    const shown = await run(['show', 'own'])
    expect(shown.code, shown.stderr).toBe(0)
    expect(shown.stdout).toMatch(/^Run own {2}completed/)
    expect((await run(['cancel', 'own'])).stdout).toMatch(/Run own is already completed/)
    const again = await run(['run', config, '--run-id', 'own'])
    expect(again.code).toBe(2)
    expect(again.stderr).toMatch(/run own already exists/)
  }, 60_000)

  test('a JSON config with a process agent; a bad one is refused naming the field', async () => {
    const good = path.join(cwd, 'echo.json')
    await writeFile(
      good,
      JSON.stringify({
        agents: [{ name: 'echoer', instructions: 'Echo.' }],
        model: { provider: 'command', command: 'sh', args: ['-c', 'echo "heard: $(cat | tail -n 1)"'] },
        task: 'hello there',
      }),
    )
    const ok = await run(['run', good])
    expect(ok.code, ok.stderr).toBe(0)
    expect(ok.stdout).toMatch(/Result: "heard: hello there"/)

    const bad = path.join(cwd, 'bad.json')
    await writeFile(bad, JSON.stringify({ agents: [{ name: 'x', tools: ['rm-rf'] }] }))
    const refused = await run(['run', bad, 'task'])
    expect(refused.code).toBe(2)
    expect(refused.stderr).toMatch(
      /config .*bad\.json: agents\.0\.tools\.0: unknown tool "rm-rf"; a JSON config has the builtin tools sleep/,
    )

    // Broken JSON: the file, and where to look when Node says (a position, or the end).
    await writeFile(bad, '{\n  "agents": [{ "name": "x", }]\n}\n')
    const unparsed = await run(['run', bad, 'task'])
    expect(unparsed.code).toBe(2)
    expect(unparsed.stderr).toMatch(/config .*bad\.json is not valid JSON at line 2, column 29: Expected/)
    await writeFile(bad, '{"agents": [')
    const cut = await run(['run', bad, 'task'])
    expect(cut.stderr).toMatch(/config .*bad\.json is not valid JSON at line 1, column 13: Unexpected end/)

    // No model, and none in the environment: the way out the error names is one `run` has.
    const modelless = path.join(cwd, 'modelless.json')
    await writeFile(modelless, JSON.stringify({ agents: [{ name: 'x' }], task: 'hello' }))
    const unmodelled = await run(['run', modelless], { OPENAI_API_KEY: '' })
    expect(unmodelled.code).toBe(2)
    expect(unmodelled.stderr).toMatch(
      /the config has no `model` and OPENAI_API_KEY is not set: set it, or give the config a `model`/,
    )
    await writeFile(
      modelless,
      JSON.stringify({ agents: [{ name: 'x' }], model: { provider: 'openai', model: 'm' } }),
    )
    const keyless = await run(['run', modelless, 'hello'], { OPENAI_API_KEY: '' })
    expect(keyless.code).toBe(2)
    expect(keyless.stderr).toMatch(/config .*modelless\.json: model: openaiModel needs an API key/)
  }, 60_000)

  test("a JSON config's command and workspaces.base are relative to the config; a missing one is refused at load", async () => {
    const folder = path.join(cwd, 'conf')
    await mkdir(path.join(folder, 'project'), { recursive: true })
    await writeFile(path.join(folder, 'project', 'base.txt'), 'from the base\n')
    await writeFile(path.join(folder, 'read-base.sh'), '#!/bin/sh\ncat base.txt\n', { mode: 0o755 })
    const configWith = async (name: string, command: string, base: string) => {
      const file = path.join(folder, name)
      await writeFile(
        file,
        JSON.stringify({
          agents: [{ name: 'reader' }],
          model: { provider: 'command', command },
          workspaces: { base },
          task: 'read',
        }),
      )
      return file
    }
    // Started from another folder than the config's.
    const ok = await run(['run', await configWith('ok.json', './read-base.sh', 'project')])
    expect(ok.code, ok.stderr).toBe(0)
    expect(ok.stdout).toMatch(/Result: "from the base"/)

    const noBase = await run(['run', await configWith('no-base.json', './read-base.sh', 'nowhere')])
    expect(noBase.code).toBe(2)
    expect(noBase.stderr).toMatch(/config .*no-base\.json: workspaces\.base .*conf\/nowhere: no such folder/)
    const fileBase = await run(['run', await configWith('file-base.json', './read-base.sh', 'read-base.sh')])
    expect(fileBase.code).toBe(2)
    expect(fileBase.stderr).toMatch(/workspaces\.base .*read-base\.sh is a file; expected a folder/)
    const noCommand = await run(['run', await configWith('no-command.json', './nothing.sh', 'project')])
    expect(noCommand.code).toBe(2)
    expect(noCommand.stderr).toMatch(
      /config .*no-command\.json: model\.command \.\/nothing\.sh: no such file \(looked for .*conf\/nothing\.sh\)/,
    )
    expect(await readdir(path.join(cwd, '.cohort', 'launches'))).toHaveLength(1)
  }, 60_000)

  test('parallel --timeout stops a task that runs longer: it fails with the reason, the others finish', async () => {
    const started = performance.now()
    const out = await run(['parallel', 'sleep 30 AND echo quick', '--command', 'sh', '--timeout', '1s'])
    expect(out.code, out.stderr).toBe(1)
    expect(out.stdout).toMatch(/\| task-1 \| failed \| .* \| error: .*1000 ms/)
    expect(out.stdout).toMatch(/\| task-2 \| completed \| .* \| quick \|/)
    expect(out.stderr).toMatch(/1 task failed/)
    // The sleeping command was stopped, not waited for.
    expect(performance.now() - started).toBeLessThan(20_000)
    const refused = await run(['parallel', 'a AND b', '--command', 'true', '--timeout', '0s'])
    expect(refused.code).toBe(2)
    expect(refused.stderr).toMatch(/--timeout must be above 0/)
  }, 60_000)

  test("parallel runs more tasks than a model's launch may start (maxChildrenPerLaunch, 20)", async () => {
    const out = await run([
      'parallel',
      Array.from({ length: 21 }, () => 'true').join(' AND '),
      '--command',
      'sh',
    ])
    expect(out.code, out.stderr).toBe(0)
    expect(out.stdout).toMatch(/; 21 completed, 0 failed,/)
  }, 60_000)

  test('parallel with more tasks than one run holds says how many it takes and to split them; nothing is stored', async () => {
    const tasks = (count: number) => Array.from({ length: count }, () => 'true').join(' AND ')
    // runPlan's own refusal said "raise it (limits.maxAgents)": the CLI has no flag for that.
    const byCommand = await run(['parallel', tasks(231), '--command', 'sh'])
    expect(byCommand.code, byCommand.stdout).toBe(2)
    expect(byCommand.stderr).toMatch(
      /cohort parallel --command takes at most 199 tasks; got 231: split the tasks over several runs/,
    )
    expect(byCommand.stderr).not.toMatch(/raise it/)
    const byModel = await run(['parallel', tasks(199)], { OPENAI_API_KEY: '' })
    expect(byModel.code).toBe(2)
    expect(byModel.stderr).toMatch(
      /cohort parallel on a model takes at most 198 tasks \(199 with --command\); got 199: split the tasks/,
    )
    expect((await run(['ls'])).stdout).toMatch(/^No runs in /)
  }, 60_000)

  test('parallel --max-parallel 2 runs at most two tasks at once; a bad value exits 2', async () => {
    const log = path.join(cwd, 'starts-and-ends.log')
    const task = 'echo start >> "$PAR_LOG"; sleep 0.5; echo end >> "$PAR_LOG"'
    const tasks = [task, task, task, task].join(' AND ')
    const out = await run(['parallel', tasks, '--command', 'sh', '--max-parallel', '2'], { PAR_LOG: log })
    expect(out.code, out.stderr).toBe(0)
    expect(out.stdout).toMatch(/; 4 completed, 0 failed,/)
    // The most tasks between their start and their end at any moment, from the order they wrote in.
    let atOnce = 0
    let most = 0
    for (const line of (await readFile(log, 'utf8')).split('\n').filter(Boolean)) {
      atOnce += line === 'start' ? 1 : -1
      most = Math.max(most, atOnce)
    }
    expect(most).toBe(2)
    // The two queued behind the first two ran for about half the time they took: the table says so.
    expect(out.stdout).toMatch(/\| task-3 \| completed \| \S+ m?s \(\d+ ms at work\) \| /)
    expect(out.stdout).toMatch(/\| task-4 \| completed \| \S+ m?s \(\d+ ms at work\) \| /)
    for (const value of ['0', 'two', '1.5']) {
      const refused = await run(['parallel', 'a AND b', '--command', 'true', '--max-parallel', value])
      expect(refused.code, value).toBe(2)
      expect(refused.stderr).toMatch(`--max-parallel must be a positive integer, got "${value}"`)
    }
  }, 60_000)

  test('parallel with three process agents: all at once, results per task, speedup and conflicts', async () => {
    const example = path.join(repoRoot, 'examples/cli')
    const out = await run(
      [
        'parallel',
        'count the lines of notes.txt AND add a changelog entry AND append a summary to notes.txt',
        '--command',
        'sh',
        '--arg',
        path.join(example, 'task.sh'),
        '--base',
        path.join(example, 'project'),
        '--run-id',
        'par',
      ],
      { COHORT_TASK_SECONDS: '0.6' },
    )
    expect(out.code, out.stderr).toBe(0)
    expect(out.stdout).toMatch(/\| task-1 \| completed \| \d+ ms \| notes.txt has 3 lines \|/)
    expect(out.stdout).toMatch(/\| task-2 \| completed \| .* \| CHANGELOG.md written/)
    expect(out.stdout).toMatch(/\| task-3 \| completed \| .* \| summary appended/)
    // The plan's own root is no task: three tasks, three completed.
    expect(out.stdout).toMatch(/; 3 completed, 0 failed,/)
    const speedup = Number(/speedup ([\d.]+)×/.exec(out.stdout)?.[1])
    expect(speedup).toBeGreaterThan(1.8)
    expect(out.stdout).toMatch(/Conflicts .*: notes.txt \(cohort-plan.task-2, cohort-plan.task-3\)/)
    const show = await run(['show', 'par'])
    expect(show.stdout).toMatch(/Conflicts: notes.txt/)

    const noModel = await run(['parallel', 'a AND b'], { OPENAI_API_KEY: '' })
    expect(noModel.code).toBe(2)
    expect(noModel.stderr).toMatch(/needs a model: no --command was given .*set it, or pass --command/)
    const empty = await run(['parallel', 'a AND  AND b', '--command', 'true'])
    expect(empty.stderr).toMatch(/expected "task A AND task B AND …"/)
    // A base that cannot be one is refused before anything runs.
    for (const [base, why] of [
      ['no-such-folder', /--base no-such-folder: no such folder/],
      [path.join(example, 'task.sh'), /is a file; expected a folder/],
      ['.', /--base \. holds the cohort folder .*keep it elsewhere with --dir/],
    ] as const) {
      const refused = await run(['parallel', 'a AND b', '--command', 'true', '--base', base])
      expect(refused.code, refused.stdout).toBe(2)
      expect(refused.stderr).toMatch(why)
    }
  }, 60_000)

  test('parallel refuses --arg and --base without --command, which alone uses them; nothing is stored', async () => {
    // A model is at hand, so without the refusal the tasks would run on it, the flags ignored.
    const env = { OPENAI_API_KEY: 'sk-local-test', OPENAI_BASE_URL: 'http://127.0.0.1:9/v1' }
    await mkdir(path.join(cwd, 'project'))
    for (const [flags, named] of [
      [['--arg', '-x'], '--arg'],
      [['--base', 'project'], '--base'],
    ] as const) {
      const refused = await run(['parallel', 'a AND b', ...flags], env)
      expect(refused.code, refused.stdout).toBe(2)
      expect(refused.stderr).toBe(
        `cohort: ${named} is for the program of --command, and no --command was given: pass --command <program>, or leave ${named} out\n`,
      )
    }
    expect((await run(['ls', '--json'])).stdout).toBe('[]\n')
  }, 60_000)

  test('a run that waits on a person says what for; Ctrl-C stores it; approve and answer continue it', async () => {
    const first = await untilWaiting([
      'run',
      path.join(repoRoot, 'tests/fixtures/cli-approval-config.ts'),
      '--run-id',
      'waiting',
    ])
    expect(first.code).toBe(130)
    expect(first.said).toMatch(/Stopped; run waiting is stored/)
    const callId =
      /operator waits for approval of call (\S+): Ctrl-C, then `cohort approve waiting operator \S+`/.exec(
        first.said,
      )?.[1]
    expect(callId).toBeDefined()
    expect((await run(['show', 'waiting'])).stdout).toMatch(
      /⏸ operator {2}suspended .* {2}waits for approval of deploy \(call \S+\)/,
    )

    const wrong = await run(['approve', 'waiting', 'operator', 'call-nope'])
    expect(wrong.code).toBe(2)
    expect(wrong.stderr).toMatch(
      /agent operator of run waiting is not waiting for approval of call "call-nope" \(it waits for approval of call "\S+"\)/,
    )
    // Refused before the run was resumed: nothing of it ran again.
    expect(wrong.stdout).toBe('')
    // A call id alone names no agent: the call id repeats across agents.
    const unnamed = await run(['approve', 'waiting', callId!])
    expect(unnamed.code).toBe(2)
    expect(unnamed.stderr).toMatch(/missing required argument 'callId'/)

    const approved = await untilWaiting(['approve', 'waiting', 'operator', callId!])
    expect(approved.code).toBe(130)
    expect(approved.said).toMatch(
      /operator waits for input \(which region\?\): Ctrl-C, then `cohort answer waiting operator <answer>`/,
    )

    const answered = await run(['answer', 'waiting', 'operator', 'eu-west'])
    expect(answered.code, answered.stderr).toBe(0)
    expect(answered.stdout).toMatch(/Result: \[[\s\S]*deployed api[\s\S]*eu-west[\s\S]*\]/)
    const late = await run(['approve', 'waiting', 'operator', callId!])
    expect(late.code).toBe(2)
    expect(late.stderr).toMatch(/run waiting has already completed/)
  }, 60_000)

  test('answer to an agent that waits for an approval is refused, naming approve and reject; here and with --server', async () => {
    const stopped = await untilWaiting(['run', twoWaiting, '--run-id', 'two'], 2)
    expect(stopped.code, stopped.said).toBe(130)
    const callId = /lead\.db waits for approval of call (\S+):/.exec(stopped.said)?.[1]
    expect(callId).toBeDefined()
    const refusal = new RegExp(
      `agent lead\\.db of run two waits for approval of call ${callId} \\(deploy\\), not for an answer: \`cohort approve two lead\\.db ${callId}\` or \`cohort reject two lead\\.db ${callId}\``,
    )
    // Should it run the run again, it is stopped as soon as it says lead.q waits (or after 10 s).
    const refused = await untilWaiting(['answer', 'two', 'lead.db', 'yes'], 1, 10_000)
    expect(refused.code, refused.said).toBe(2)
    expect(refused.said).toMatch(refusal)
    expect(refused.stdout).toBe('')
    const shown = JSON.parse((await run(['show', 'two', '--json'])).stdout) as RunView
    expect(shown.agents.find((agent) => agent.id === 'lead.db')?.awaiting).toMatchObject({
      kind: 'approval',
      callId,
    })

    const server = cohort(['serve', twoWaiting, '--port', '0'])
    let link = ''
    const served = collect(server, (line) => {
      link ||= /cohort serve: (\S+) /.exec(line)?.[1] ?? ''
    })
    try {
      await waitUntil(() => link !== '', 20_000)
      const remote = await run(['answer', 'two', 'lead.db', 'yes', '--server', link])
      expect(remote.code, remote.stderr).toBe(2)
      expect(remote.stderr).toMatch(refusal)
      const agent = async () => {
        const response = await fetch(new URL('api/runs/two/agents/lead.db', link), {
          headers: { authorization: `Bearer ${new URL(link).searchParams.get('token')}` },
        })
        return ((await response.json()) as RunView['agents'] extends (infer A)[] ? { agent: A } : never).agent
      }
      expect((await agent()).awaiting).toMatchObject({ kind: 'approval', callId })
      expect((await agent()).status).toBe('suspended')
    } finally {
      server.kill('SIGTERM')
      await served
    }
  }, 60_000)

  test('resume and approve say at once which agents already wait on a person, and how to answer them', async () => {
    const stopped = await untilWaiting(['run', twoWaiting, '--run-id', 'both'], 2)
    expect(stopped.code, stopped.said).toBe(130)
    const callId = /lead\.db waits for approval of call (\S+):/.exec(stopped.said)?.[1]
    const inputHint =
      /lead\.q waits for input \(which colour\?\): Ctrl-C, then `cohort answer both lead\.q <answer>`/

    // Stopped after 10 s should they say nothing.
    const resumed = await untilWaiting(['resume', 'both'], 2, 10_000)
    expect(resumed.said).toMatch(
      `lead.db waits for approval of call ${callId}: Ctrl-C, then \`cohort approve both lead.db ${callId}\``,
    )
    expect(resumed.said).toMatch(inputHint)
    expect(resumed.code).toBe(130)

    const approved = await untilWaiting(['approve', 'both', 'lead.db', callId!], 1, 10_000)
    expect(approved.said).toMatch(inputHint)
    expect(approved.said).not.toMatch(/lead\.db waits/)
    expect(approved.code).toBe(130)

    const answered = await run(['answer', 'both', 'lead.q', 'blue'])
    expect(answered.code, answered.stderr).toBe(0)
    expect(answered.stdout).toMatch(/Result: "all done"/)
  }, 90_000)

  test('every command that names a run says alike that it is not there; one that has ended says so, launched here or not', async () => {
    for (const args of [
      ['show', 'nope'],
      ['cancel', 'nope'],
      ['resume', 'nope'],
      ['approve', 'nope', 'a', 'b'],
      ['reject', 'nope', 'a', 'b'],
      ['answer', 'nope', 'a', 'x'],
    ]) {
      const refused = await run(args)
      expect(refused.code, args.join(' ')).toBe(2)
      expect(refused.stderr, args.join(' ')).toBe(
        `cohort: run nope is not in ${path.join('.cohort', 'runs')}\n`,
      )
    }
    const done = await run(['run', config, '--run-id', 'done'], { CLI_SLEEP: '0' })
    expect(done.code, done.stderr).toBe(0)
    // As a run another folder or a server launched: no launch record here.
    await rm(path.join(cwd, '.cohort/launches/done.json'))
    for (const args of [
      ['resume', 'done'],
      ['approve', 'done', 'lead', 'c1'],
      ['answer', 'done', 'lead', 'x'],
    ]) {
      const refused = await run(args)
      expect(refused.code, args.join(' ')).toBe(2)
      expect(refused.stderr, args.join(' ')).toBe(
        'cohort: run done has already completed; `cohort show done` shows it\n',
      )
    }
  }, 60_000)

  test('parallel on a language model: one agent per task, then an aggregator that sees their results', async () => {
    const api = await startOpenAIServer((request) => {
      const messages = request.body.messages ?? []
      const system = messages[0]?.content ?? ''
      if (system.includes('Combine the results')) {
        const context = messages.map((message) => message.content ?? '').join('\n')
        const both = context.includes('done: count sheep') && context.includes('done: name stars')
        return {
          json: completion({
            content: JSON.stringify({ action: 'finish', result: both ? 'combined both' : 'missing' }),
          }),
        }
      }
      return {
        json: completion({
          content: JSON.stringify({ action: 'finish', result: `done: ${messages[1]?.content}` }),
        }),
      }
    })
    try {
      const env = { OPENAI_API_KEY: 'sk-local-test', OPENAI_BASE_URL: api.baseURL, COHORT_MODEL: 'local' }
      const out = await run(['parallel', 'count sheep AND name stars', '--run-id', 'llm'], env)
      expect(out.code, out.stderr).toBe(0)
      expect(out.stdout).toMatch(/\| task-1 \| completed \| .* \| done: count sheep \|/)
      expect(out.stdout).toMatch(/\| task-2 \| completed \| .* \| done: name stars \|/)
      expect(out.stdout).toMatch(/\| aggregate \| completed \| .* \| combined both \|/)
      expect(api.requests).toHaveLength(3)
    } finally {
      await api.close()
    }
  }, 60_000)

  test('parallel lists its tasks in the order given, the aggregate last, also when they fail before it starts', async () => {
    // An aggregate whose tasks failed never starts: its start time is its launch, before theirs.
    const api = await startOpenAIServer(() => ({
      status: 401,
      json: { error: { message: 'Incorrect API key provided', code: 'invalid_api_key' } },
    }))
    try {
      const env = { OPENAI_API_KEY: 'sk-local-test', OPENAI_BASE_URL: api.baseURL, COHORT_MODEL: 'local' }
      const out = await run(['parallel', 'count sheep AND name stars AND sing', '--run-id', 'denied'], env)
      expect(out.code).toBe(1)
      expect(out.stderr).toMatch(/^4 tasks failed\.$/m)
      const rows = [...out.stdout.matchAll(/^\| ([\w-]+) \| failed \|/gm)].map((row) => row[1])
      expect(rows).toEqual(['task-1', 'task-2', 'task-3', 'aggregate'])
      // Tasks on a model have no workspaces, so no line about their conflicts.
      expect(out.stdout).not.toMatch(/workspaces/)
    } finally {
      await api.close()
    }
  }, 60_000)

  test('approve, answer and cancel go to the `cohort serve` that hosts the run, with its token', async () => {
    const approvalConfig = path.join(repoRoot, 'tests/fixtures/cli-approval-config.ts')
    const server = cohort(['serve', approvalConfig, '--port', '0'])
    let link = ''
    const served = collect(server, (line) => {
      link ||= /cohort serve: (\S+) /.exec(line)?.[1] ?? ''
    })
    try {
      await waitUntil(() => link !== '', 20_000)
      const { origin, searchParams } = new URL(link)
      const token = searchParams.get('token')!
      const runView = async () => {
        const response = await fetch(`${origin}/api/runs/hosted`, {
          headers: { authorization: `Bearer ${token}` },
        })
        return (await response.json()) as {
          run: { status: string; result?: unknown }
          agents: { awaiting?: { kind: string; callId: string } }[]
        }
      }
      const started = await fetch(`${origin}/api/runs`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ task: 'ship it', runId: 'hosted' }),
      })
      expect(started.status).toBe(201)
      await waitUntil(async () => (await runView()).agents[0]?.awaiting?.kind === 'approval')
      const callId = (await runView()).agents[0]!.awaiting!.callId

      // Without the token, or with another, the server refuses and the run still waits.
      const without = await run(['approve', 'hosted', 'operator', callId, '--server', origin], {
        COHORT_TOKEN: '',
      })
      expect(without.code).toBe(2)
      expect(without.stderr).toMatch(/refused: missing token.*--token or COHORT_TOKEN/)
      const wrong = await run([
        'approve',
        'hosted',
        'operator',
        callId,
        '--server',
        origin,
        '--token',
        'x'.repeat(43),
      ])
      expect(wrong.code).toBe(2)
      expect(wrong.stderr).toMatch(/refused: wrong token/)
      const rejectOther = await run(['reject', 'hosted', 'operator', 'call-nope', '--server', link])
      expect(rejectOther.code).toBe(2)
      expect(rejectOther.stderr).toMatch(
        /refused: agent operator of run hosted is not waiting for approval of call "call-nope"/,
      )
      const rejectGhost = await run(['reject', 'hosted', 'ghost', callId, '--server', link])
      expect(rejectGhost.code).toBe(2)
      expect(rejectGhost.stderr).toMatch(/refused: run hosted has no agent "ghost"/)
      expect((await runView()).agents[0]!.awaiting).toMatchObject({ kind: 'approval', callId })

      // Without --server, the run would be run here too (the tool twice): refused, and so is a second server.
      const local = await run(['approve', 'hosted', 'operator', callId])
      expect(local.code).toBe(2)
      expect(local.stderr).toMatch(
        /cohort serve \(pid \d+, http:\/\/127\.0\.0\.1:\d+\/\) hosts the runs of .*: answer it with --server and the link it printed/,
      )
      const second = await run(['serve', approvalConfig, '--port', '0'])
      expect(second.code).toBe(2)
      expect(second.stderr).toMatch(/already hosts the runs of .*: stop it first/)
      expect((await runView()).agents[0]!.awaiting).toMatchObject({ kind: 'approval', callId })

      const approved = await run(['approve', 'hosted', 'operator', callId, '--server', origin], {
        COHORT_TOKEN: token,
      })
      expect(approved.code, approved.stderr).toBe(0)
      expect(approved.stdout).toMatch(`Approved call ${callId} of operator in run hosted`)
      await waitUntil(async () => (await runView()).agents[0]?.awaiting?.kind === 'input')

      // The printed link carries the token itself.
      const answered = await run(['answer', 'hosted', 'operator', 'eu-west', '--server', link])
      expect(answered.code, answered.stderr).toBe(0)
      await waitUntil(async () => (await runView()).run.status === 'completed')
      expect(JSON.stringify((await runView()).run.result)).toMatch(/eu-west/)
      // As without a server: a run that has ended is left as it is, and that is no error.
      const late = await run(['cancel', 'hosted', '--server', link])
      expect(late.code, late.stderr).toBe(0)
      expect(late.stdout).toMatch(/Run hosted is already completed/)
      const unknown = await run(['cancel', 'nosuch', '--server', link])
      expect(unknown.code).toBe(2)
      expect(unknown.stderr).toMatch(/nosuch/)
      const nowhere = await run(['cancel', 'hosted', '--server', 'http://127.0.0.1:9'])
      expect(nowhere.code).toBe(2)
      expect(nowhere.stderr).toMatch(/cannot reach the server at http:\/\/127\.0\.0\.1:9\//)
    } finally {
      server.kill('SIGTERM')
      await served
    }
  }, 60_000)

  test('serve prints each run, each wait on a person with how to answer it, and each refused request; no token', async () => {
    const approvalConfig = path.join(repoRoot, 'tests/fixtures/cli-approval-config.ts')
    const server = cohort(['serve', approvalConfig, '--port', '0'])
    let link = ''
    const lines: string[] = []
    const served = collect(server, (line) => {
      link ||= /cohort serve: (\S+) /.exec(line)?.[1] ?? ''
      lines.push(line)
    })
    const { origin, searchParams } = await waitUntil(() => link !== '', 20_000).then(() => new URL(link))
    const token = searchParams.get('token')!
    const api = (route: string, init: RequestInit = {}, headers: Record<string, string> = {}) =>
      fetch(`${origin}/api/runs${route}`, {
        ...init,
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', ...headers },
      })
    try {
      await api('', { method: 'POST', body: JSON.stringify({ runId: 'loud', task: 'ship it' }) })
      await waitUntil(() => lines.some((line) => line.includes('waiting for approval')), 20_000)
      const approve = { method: 'POST', body: JSON.stringify({ callId: 'operator#0.0' }) }
      const route = '/loud/agents/operator/approve'
      expect((await api(route, approve, { authorization: 'Bearer wrong' })).status).toBe(401)
      expect((await api(route, approve, { origin: 'http://evil.example' })).status).toBe(403)
      expect((await api(route, approve)).status).toBe(202)
      await waitUntil(() => lines.some((line) => line.includes('waiting for an answer')), 20_000)
      await api('/loud/agents/operator/resume', { method: 'POST', body: JSON.stringify({ payload: 'eu' }) })
      await waitUntil(() => lines.some((line) => line.includes('run loud completed')), 20_000)
    } finally {
      server.kill('SIGTERM')
    }
    const { stdout, stderr } = await served
    expect(stdout).toMatch(/Z run loud started: operator ← ship it\n/)
    expect(stdout).toMatch(
      /Z run loud: operator suspended, waiting for approval of deploy \(call operator#0\.0\); answer in the inspector \(http:\/\/127\.0\.0\.1:\d+\/\) or with `cohort approve loud operator operator#0\.0` or `cohort reject loud operator operator#0\.0` and --server/,
    )
    expect(stdout).toMatch(/Z run loud: operator approved: deploy \(call operator#0\.0\)\n/)
    expect(stdout).toMatch(/Z run loud: .*`cohort answer loud operator <answer>`/)
    expect(stdout).toMatch(/Z run loud completed: /)
    // Agent steps stay in the log files.
    expect(stdout).not.toMatch(/calls scripted|→ deploy/)
    const refused = 'Z refused POST /api/runs/loud/agents/operator/approve'
    expect(stderr).toContain(`${refused} (401): wrong token`)
    expect(stderr).toContain(`${refused} (403): requests from pages at http://evil.example are refused`)
    // The token is in the sign-in link of the banner only.
    expect(stdout.split(link).join('') + stderr).not.toContain(token)
  }, 60_000)

  test('serve: --no-auth warns and asks for no token; contradictory or malformed flags exit 2', async () => {
    const approvalConfig = path.join(repoRoot, 'tests/fixtures/cli-approval-config.ts')
    const open = cohort(['serve', approvalConfig, '--port', '0', '--no-auth'], { COHORT_TOKEN: '' })
    let link = ''
    const served = collect(open, (line) => {
      link ||= /cohort serve: (\S+) /.exec(line)?.[1] ?? ''
    })
    await waitUntil(() => link !== '', 20_000)
    expect(new URL(link).searchParams.has('token')).toBe(false)
    expect((await fetch(`${link}api/runs`)).status).toBe(200)
    open.kill('SIGTERM')
    const out = await served
    expect(out.stderr).toMatch(
      /--no-auth: no token is asked for, so any program .* Use it only behind a proxy/,
    )
    // On every interface, the warning says the network can reach it.
    const wide = cohort(['serve', approvalConfig, '--port', '0', '--no-auth', '--host', '0.0.0.0'], {
      COHORT_TOKEN: '',
    })
    let up = false
    const wideServed = collect(wide, (line) => {
      up ||= line.startsWith('cohort serve: http')
    })
    await waitUntil(() => up, 20_000)
    wide.kill('SIGTERM')
    expect((await wideServed).stderr).toMatch(
      /--no-auth: no token is asked for, so anyone who can reach 0\.0\.0\.0 on the network, any program on this machine/,
    )

    const refusals: [string[], RegExp][] = [
      [['--no-auth', '--token', 'a'.repeat(20)], /--no-auth and a token .* contradict each other/],
      [['--token', 'short'], /the token must be 16 to 512 characters/],
      [['--allow-origin', 'ops.example.com'], /"ops.example.com" is not an origin; expected scheme:\/\/host/],
      [['--allow-host', 'a b'], /"a b" is not a host name/],
      [['--port', '70000'], /--port must be 0 to 65535, got "70000"/],
    ]
    for (const [flags, message] of refusals) {
      const refused = await run(['serve', approvalConfig, '--port', '0', ...flags], { COHORT_TOKEN: '' })
      expect(refused.code, flags.join(' ')).toBe(2)
      expect(refused.stderr, flags.join(' ')).toMatch(message)
    }
  }, 60_000)

  test('a run another process runs is exit code 3 (RUN_BUSY) for cancel, resume and approve, saying to stop it first; --version prints the version', async () => {
    const approvalConfig = path.join(repoRoot, 'tests/fixtures/cli-approval-config.ts')
    const holder = cohort(['run', approvalConfig, '--run-id', 'busy'])
    const held = new Promise<void>((resolve) =>
      holder.stderr?.on('data', (chunk: Buffer) => {
        if (/ waits for /.test(String(chunk))) resolve()
      }),
    )
    const ended = collect(holder)
    try {
      await held
      for (const args of [
        ['cancel', 'busy'],
        ['resume', 'busy'],
        ['approve', 'busy', 'operator', 'c1'],
      ]) {
        const refused = await run(args)
        expect(refused.code, args[0]).toBe(3)
        // Nothing can be approved inside a plain `cohort run`, and its claim lapses only once it stops.
        expect(refused.stderr, args[0]).toMatch(
          /^cohort: run busy is running in process \d+ on \S+, live: stop it there first \(Ctrl-C in a `cohort run` or `cohort resume` stores it\), then run this again; if that process is a `cohort serve`, send this to it with --server/,
        )
        expect(refused.stderr, args[0]).not.toMatch(/answer or cancel it there|lapses at/)
      }
    } finally {
      holder.kill('SIGINT')
    }
    expect((await ended).code).toBe(130)
    const version = await run(['--version'])
    expect(version.code).toBe(0)
    expect(version.stdout).toMatch(/^\d+\.\d+\.\d+\n$/)
  }, 60_000)

  test('serve resumes only the runs in flight that its own config started; the others are left alone, in one line', async () => {
    const approvalConfig = path.join(repoRoot, 'tests/fixtures/cli-approval-config.ts')
    const theirs = cohort(['run', config, '--run-id', 'theirs'], { CLI_SLEEP: '30' })
    await collect(theirs, (line) => {
      if (/AGENT lead suspended/.test(line)) theirs.kill('SIGKILL')
    })
    const mine = cohort(['run', approvalConfig, '--run-id', 'mine'])
    mine.stderr?.on('data', (chunk: Buffer) => {
      if (/ waits for /.test(String(chunk))) mine.kill('SIGINT')
    })
    expect((await collect(mine)).code).toBe(130)
    const store = fileStore(path.join(cwd, '.cohort', 'runs'))
    const before = await store.loadRun('theirs')
    expect(before?.run.status).toBe('running')

    const server = cohort(['serve', approvalConfig, '--port', '0'])
    let said = ''
    const served = collect(server, (line) => {
      said += `${line}\n`
    })
    try {
      await waitUntil(() => /Resumed/.test(said) && /Left/.test(said), 20_000)
      expect(said).toMatch(/^Resumed 1 run\(s\) that were in flight: mine$/m)
      expect(said).toMatch(
        /^Left 1 run\(s\) in flight alone, started by another config or `cohort parallel`: theirs$/m,
      )
      // Nor does the API run it with this config's agents and model.
      const [, url, token] = /^cohort serve: (\S+\/)\?token=(\S+) /m.exec(said)!
      const resume = (runId: string) =>
        fetch(`${url}api/runs/${runId}/resume`, {
          method: 'POST',
          headers: { authorization: `Bearer ${decodeURIComponent(token!)}` },
        })
      const refused = await resume('theirs')
      expect(refused.status).toBe(409)
      expect(((await refused.json()) as { error: string }).error).toMatch(
        /^run theirs was started by another config or by `cohort parallel`/,
      )
      expect((await resume('nowhere')).status).toBe(404)
    } finally {
      server.kill('SIGTERM')
    }
    const out = await served
    expect(out.stderr).not.toMatch(/theirs/)
    // Untouched: every record as the killed process left it.
    expect(await store.loadRun('theirs')).toEqual(before)
  }, 60_000)

  test('Ctrl-C while `cohort run` or `cohort resume` loads its config says so, and stores nothing', async () => {
    const stopWhenLoading = (args: string[]) => {
      const child = cohort(args, { CLI_SLOW_LOAD: '1' })
      return collect(child, (line) => {
        if (line === 'config loading') child.kill('SIGINT')
      })
    }
    const stopped = await stopWhenLoading(['run', config, '--run-id', 'never'])
    expect(stopped.code, stopped.stderr).toBe(130)
    expect(stopped.stderr).toMatch(/^Stopped before the run started; nothing is stored\.$/m)
    expect(await readdir(path.join(cwd, '.cohort', 'launches')).catch(() => [])).toEqual([])
    expect(await readdir(path.join(cwd, '.cohort', 'runs')).catch(() => [])).toEqual([])

    const child = cohort(['run', config, '--run-id', 'crashed'], { CLI_SLEEP: '1.5' })
    await collect(child, (line) => {
      if (/AGENT lead suspended/.test(line)) child.kill('SIGKILL')
    })
    const notResumed = await stopWhenLoading(['resume', 'crashed'])
    expect(notResumed.code, notResumed.stderr).toBe(130)
    expect(notResumed.stderr).toMatch(/^Stopped before run crashed resumed; it is stored as it was\.$/m)
    expect((await run(['ls', '--status', 'running'])).stdout).toMatch(/crashed/)
  }, 60_000)

  test('a parallel run stopped with Ctrl-C reports nothing yet; resumed, it shows its tasks and exits 1 for a failed one', async () => {
    await writeFile(path.join(cwd, 'task.sh'), '#!/bin/sh\nsleep 1; grep -q bad && exit 3; echo fine\n', {
      mode: 0o755,
    })
    // The command as a path from here: each task runs it from its own workspace.
    const args = ['parallel', 'good AND bad', '--command', './task.sh', '--run-id', 'par-stop']
    const child = cohort(args)
    const stopped = await collect(child, (line) => {
      if (/LLM .*task-2 calls/.test(line)) child.kill('SIGINT')
    })
    expect(stopped.code, stopped.stderr).toBe(130)
    expect(stopped.stdout).not.toMatch(/No conflicts|\| task \|/)
    const resumed = await run(['resume', 'par-stop'])
    expect(resumed.code, resumed.stderr).toBe(1)
    expect(resumed.stdout).toMatch(/\| task-1 \| completed \| .* \| fine \|/)
    expect(resumed.stdout).toMatch(/\| task-2 \| failed \| .* \| error: .*exited with code 3/)
    expect(resumed.stderr).toMatch(/1 task failed/)
  }, 60_000)

  test('a run killed mid-way is resumed by `cohort resume`; another is cancelled by `cohort cancel`', async () => {
    const env = { CLI_SLEEP: '1.5' }
    for (const id of ['crashed', 'doomed']) {
      const child = cohort(['run', config, '--run-id', id], env)
      await collect(child, (line) => {
        if (/AGENT lead suspended/.test(line)) child.kill('SIGKILL')
      })
    }
    expect((await run(['ls', '--status', 'running'])).stdout).toMatch(
      /crashed[\s\S]*doomed|doomed[\s\S]*crashed/,
    )

    const interrupted = cohort(['run', config, '--run-id', 'interrupted'], env)
    const stopped = await collect(interrupted, (line) => {
      if (/AGENT lead suspended/.test(line)) interrupted.kill('SIGINT')
    })
    expect(stopped.code).toBe(130)
    expect(stopped.stderr).toMatch(
      /Stopped; run interrupted is stored. `cohort resume interrupted` continues it/,
    )
    // SIGTERM (a service manager stopping it) stores it the same way.
    const terminated = cohort(['run', config, '--run-id', 'terminated'], env)
    const stoppedByTerm = await collect(terminated, (line) => {
      if (/AGENT lead suspended/.test(line)) terminated.kill('SIGTERM')
    })
    expect(stoppedByTerm.stderr).toMatch(/Stopped; run terminated is stored/)
    expect(await fileStore(path.join(cwd, '.cohort', 'runs')).loadRunRecord!('terminated')).toMatchObject({
      status: 'running',
    })
    const continued = await run(['resume', 'interrupted'], env)
    expect(continued.stdout).toMatch(/Result: \[\s+"a:nap done",\s+"b:nap done"\s+\]/)
    // The time between Ctrl-C and the resume is kept apart from the time it ran.
    expect((await run(['show', 'interrupted'])).stdout).toMatch(/^Started .*\(.+, .+ of it stopped\)$/m)

    const resumed = await run(['resume', 'crashed'], env)
    expect(resumed.code, resumed.stderr).toBe(0)
    expect(resumed.stdout).toMatch(/Result: \[\s+"a:nap done",\s+"b:nap done"\s+\]/)

    const cancelled = await run(['cancel', 'doomed'])
    expect(cancelled.code, cancelled.stderr).toBe(0)
    expect(cancelled.stdout).toMatch(/Run doomed cancelled/)
    const show = await run(['show', 'doomed'])
    expect(show.stdout).toMatch(/^Run doomed {2}cancelled/)
    expect(show.stdout).not.toMatch(/running/)
    expect((await run(['cancel', 'doomed'])).stdout).toMatch(/already cancelled/)
  }, 60_000)

  test('a closed terminal (SIGHUP) stores a run as Ctrl-C does, and stops serve as SIGTERM does', async () => {
    const env = { CLI_SLEEP: '1.5' }
    const child = cohort(['run', config, '--run-id', 'hung-up'], env)
    const stopped = await collect(child, (line) => {
      if (/AGENT lead suspended/.test(line)) child.kill('SIGHUP')
    })
    expect(stopped.code, stopped.stderr).toBe(130)
    expect(stopped.stderr).toMatch(/Stopped; run hung-up is stored/)
    const resumed = await run(['resume', 'hung-up'], env)
    expect(resumed.code, resumed.stderr).toBe(0)
    expect(resumed.stdout).toMatch(/Result: \[\s+"a:nap done",\s+"b:nap done"\s+\]/)

    const server = cohort(['serve', config, '--port', '0'])
    const served = collect(server, (line) => {
      if (/^cohort serve: /.test(line)) server.kill('SIGHUP')
    })
    const out = await served
    expect(out.code, out.stderr).toBe(0)
    expect(out.stdout).toMatch(/SIGHUP: storing every run and stopping/)
    // It let the folder go: another command runs its runs again.
    expect(await readdir(path.join(cwd, '.cohort'))).not.toContain('serve.json')
  }, 60_000)

  test('a run piped to a reader that stops reading (`| head`) is stored, not left running unwatched', async () => {
    const env = { CLI_SLEEP: '1.5' }
    const child = cohort(['run', config, '--run-id', 'piped'], env)
    // The first line read, the pipe closes: the CLI's next line meets EPIPE.
    const stopped = await collect(child, () => child.stdout?.destroy())
    expect(stopped.code, stopped.stderr).toBe(130)
    expect(stopped.stderr).toMatch(/Stopped; run piped is stored/)
    const resumed = await run(['resume', 'piped'], env)
    expect(resumed.code, resumed.stderr).toBe(0)
    expect(resumed.stdout).toMatch(/Result: \[\s+"a:nap done",\s+"b:nap done"\s+\]/)
  }, 60_000)

  test('--store with a URL of no store the CLI opens (a typo) is refused, not made a folder of that name', async () => {
    const typo = await run(['ls', '--store', 'postgress://user@host/db'])
    expect(typo.code).toBe(2)
    expect(typo.stderr).toMatch(/--store postgress:\/\/… is no store the CLI opens; expected a postgres:\/\//)
    expect(await readdir(cwd)).not.toContain('postgress:')
  })

  test('--store puts runs in PostgreSQL: run, ls and show read them there', async () => {
    if (!postgres.enabled) {
      console.warn(`\n!!! cohort --store postgres test SKIPPED: ${postgres.unreachable}\n`)
      return
    }
    const schema = `cohort_cli_${Date.now().toString(36)}`
    const store = `${databaseUrl}${databaseUrl.includes('?') ? '&' : '?'}schema=${schema}`
    try {
      const started = await run(['run', config, '--run-id', 'in-pg', '--store', store])
      expect(started.code, started.stderr).toBe(0)
      expect((await run(['ls', '--store', store])).stdout).toMatch(/^in-pg\s+completed/m)
      expect((await run(['show', 'in-pg', '--store', store])).stdout).toMatch(/^Run in-pg {2}completed/)
      const elsewhere = await run(['show', 'in-pg'])
      expect(elsewhere.code).toBe(2)
      expect(elsewhere.stderr).toMatch(/run in-pg is not in .*runs/)
      const client = new pg.Client({ connectionString: databaseUrl })
      await client.connect()
      const rows = await client.query(`SELECT id FROM "${schema}".agents ORDER BY id`)
      await client.end()
      expect(rows.rows.map((row) => row.id)).toEqual(['lead', 'lead.a', 'lead.b'])
    } finally {
      const client = new pg.Client({ connectionString: databaseUrl })
      await client.connect().catch(() => {})
      await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`).catch(() => {})
      await client.end().catch(() => {})
    }
  }, 60_000)

  test('cohort prune --older-than 7d removes the runs that finished before, with their logs and launch records; running runs stay', async () => {
    const home = path.join(cwd, '.cohort')
    const store = fileStore(path.join(home, 'runs'))
    const day = 86_400_000
    const aged: [string, RunStatus, number][] = [
      ['done-30d', 'completed', 30],
      ['failed-8d', 'failed', 8],
      ['done-6d', 'completed', 6],
      ['running-30d', 'running', 30],
    ]
    for (const [id, status, days] of aged) {
      const at = Date.now() - days * day
      await store.saveRun(makeRunRecord(id, { status, createdAt: at, updatedAt: at }))
      await mkdir(path.join(home, 'logs', id), { recursive: true })
      await writeFile(path.join(home, 'logs', id, 'lead.log'), 'a line\n')
      await mkdir(path.join(home, 'launches'), { recursive: true })
      await writeFile(path.join(home, 'launches', `${id}.json`), '{"kind":"config","config":"x"}')
    }

    for (const [args, error] of [
      [['prune'], /prune needs --older-than <duration> \(such as 7d\) or --keep <n>/],
      [['prune', '--older-than', '7 days'], /--older-than must be a whole number and a unit .* got "7 days"/],
      [['prune', '--older-than', '-1d'], /--older-than must be a whole number and a unit/],
      [['prune', '--keep', 'all'], /--keep must be a non-negative integer, got "all"/],
    ] as const) {
      const refused = await run([...args])
      expect(refused.code, args.join(' ')).toBe(2)
      expect(refused.stderr).toMatch(error)
    }
    expect(await readdir(path.join(home, 'runs'))).toHaveLength(4)

    const pruned = await run(['prune', '--older-than', '7d'])
    expect(pruned.code, pruned.stderr).toBe(0)
    expect(pruned.stdout).toMatch(/Removed 2 finished runs from .*runs: done-30d, failed-8d\./)
    expect((await store.listRuns()).map((record) => record.id).sort()).toEqual(['done-6d', 'running-30d'])
    expect((await readdir(path.join(home, 'logs'))).sort()).toEqual(['done-6d', 'running-30d'])
    expect((await readdir(path.join(home, 'launches'))).sort()).toEqual(['done-6d.json', 'running-30d.json'])

    const kept = await run(['prune', '--keep', '0', '--json'])
    expect(JSON.parse(kept.stdout)).toEqual(['done-6d'])
  }, 60_000)
})
