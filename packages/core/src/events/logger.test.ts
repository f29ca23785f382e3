import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { PassThrough } from 'node:stream'
import { expect, test, vi } from 'vitest'
import Transport from 'winston-transport'
import { z } from 'zod'
import { defineAgent } from '../agent/define-agent.js'
import { InvalidInputError } from '../errors.js'
import { scriptedModel } from '../models/scripted-model.js'
import { memoryStore } from '../persistence/memory-store.js'
import type { Run } from '../runtime/run.js'
import { createRuntime } from '../runtime/runtime.js'
import { defineTool } from '../tools/define-tool.js'
import { describeEvent } from './describe-event.js'
import { createLogger } from './logger.js'

/** A console for the logger to write to, and what it wrote. */
function capturedConsole(): { stream: PassThrough; output: () => string } {
  const stream = new PassThrough()
  let written = ''
  stream.on('data', (chunk: Buffer) => {
    written += chunk
  })
  return { stream, output: () => written }
}

test('console lines carry elapsed ms, category and depth indentation; each agent gets a log file', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'cohort-logs-'))
  const { stream, output } = capturedConsole()
  const logger = createLogger({ dir, stream, colors: false })
  const child = defineAgent({ name: 'child', instructions: '' })
  const parent = defineAgent({ name: 'parent', instructions: '', subagents: [child] })
  const model = scriptedModel({
    parent: [
      { action: 'launch_subagents', agents: [{ agent: 'child', task: 'hello', id: 'kid' }] },
      { action: 'wait_for_subagents' },
      { action: 'finish', result: 'ok' },
    ],
    child: [{ action: 'finish', result: 'hi' }],
  })
  const run = createRuntime({ agents: [parent, child], model, logger }).start('parent', 'go')
  await run.result
  await logger.close?.()

  const lines = output().trim().split('\n')
  expect(lines[0]).toMatch(/^\[\s+\d+ ms\] RUN {3}run \S+ started: parent ← go$/)
  expect(lines).toContainEqual(
    expect.stringMatching(/^\[\s+\d+ ms\] AGENT parent suspended, waiting on kid$/),
  )
  expect(lines).toContainEqual(
    expect.stringMatching(/^\[\s+\d+ ms\] AGENT {3}parent\.kid completed in \d+ ms: hi$/),
  )
  expect(lines).toContainEqual(
    expect.stringMatching(/^\[\s+\d+ ms\] LLM {5}parent\.kid calls scripted \(turn 1\)$/),
  )

  const files = (await readdir(path.join(dir, run.id))).sort()
  expect(files).toEqual(['_run.log', 'parent.kid.log', 'parent.log'])
  const childLog = await readFile(path.join(dir, run.id, 'parent.kid.log'), 'utf8')
  expect(childLog).toMatch(
    /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z \+\d+ms \[AGENT\] parent\.kid started: hello$/m,
  )
  expect(childLog).not.toMatch(/parent suspended/)
  await rm(dir, { recursive: true, force: true })
})

test("repairs are counted from 1 in the log, the way the agent's limit counts them", async () => {
  const { stream, output } = capturedConsole()
  const logger = createLogger({ stream, colors: false, console: true })
  const solo = defineAgent({ name: 'solo', instructions: '' })
  const model = scriptedModel({ solo: ['no action here', 'nor here', { action: 'finish', result: 'ok' }] })
  await createRuntime({ agents: [solo], model, logger }).run('solo', 'go')
  await logger.close?.()
  const repairs = output()
    .split('\n')
    .filter((line) => line.includes('reply unusable'))
  expect(repairs.map((line) => line.match(/\(repair (\d+)\)/)?.[1])).toEqual(['1', '2'])
})

/** A tool a person must approve, for the tests of waits and answers. */
const deploy = defineTool({
  name: 'deploy',
  description: 'Deploys',
  parameters: z.object({}),
  needsApproval: true,
  execute: () => 'deployed',
})

test('an agent that waits on a person is logged with what it waits for', async () => {
  const { stream, output } = capturedConsole()
  const logger = createLogger({ stream, colors: false, console: true })
  const ops = defineAgent({ name: 'ops', instructions: '', tools: [deploy] })
  const model = scriptedModel({ ops: [{ action: 'call_tool', tool: 'deploy', args: {} }] })
  const run = createRuntime({ agents: [ops], model, logger }).start('ops', 'ship')
  await new Promise<void>((resolve) => run.on('agent.suspended', () => resolve()))
  await run.cancel()
  await logger.close?.()
  expect(output()).toMatch(/AGENT ops suspended, waiting for approval of deploy \(call ops#0\.0\)/)
})

test("a run's log folder removed while it runs (a prune elsewhere) is made again for its next lines", async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'cohort-logs-'))
  const logger = createLogger({ dir, console: false })
  let removed = false
  const pause = defineTool({
    name: 'pause',
    description: 'waits until the log folder is gone',
    parameters: z.object({}),
    execute: async (_args, ctx) => {
      await logger.close?.()
      await rm(path.join(dir, ctx.runId), { recursive: true, force: true })
      removed = true
      return 'ok'
    },
  })
  const solo = defineAgent({ name: 'solo', instructions: '', tools: [pause] })
  const model = scriptedModel({
    solo: [
      { action: 'call_tool', tool: 'pause', args: {} },
      { action: 'finish', result: 'after the prune' },
    ],
  })
  const run = createRuntime({ agents: [solo], model, logger }).start('solo', 'go')
  await run.result
  await logger.close?.()
  expect(removed).toBe(true)
  expect(await readFile(path.join(dir, run.id, 'solo.log'), 'utf8')).toMatch(
    /solo completed in \d+ ms: after the prune/,
  )
  await rm(dir, { recursive: true, force: true })
})

test('colours follow the stream the lines go to, and NO_COLOR only when it is set to something', async () => {
  const lines = async (isTTY: boolean | undefined) => {
    const { stream, output } = capturedConsole()
    if (isTTY !== undefined) Object.assign(stream, { isTTY })
    const logger = createLogger({ stream, console: true })
    const solo = defineAgent({ name: 'solo', instructions: '' })
    await createRuntime({
      agents: [solo],
      model: scriptedModel({ solo: [{ action: 'finish', result: 1 }] }),
      logger,
    }).run('solo', 'go')
    await logger.close?.()
    return output()
  }
  const stdoutWasTTY = process.stdout.isTTY
  const noColor = process.env.NO_COLOR
  try {
    // A file or pipe gets plain text even when this process's stdout is a terminal.
    Object.assign(process.stdout, { isTTY: true })
    delete process.env.NO_COLOR
    expect(await lines(undefined)).not.toContain('\u001b[')
    expect(await lines(true)).toContain('\u001b[')
    process.env.NO_COLOR = ''
    expect(await lines(true)).toContain('\u001b[')
    process.env.NO_COLOR = '1'
    expect(await lines(true)).not.toContain('\u001b[')
  } finally {
    Object.assign(process.stdout, { isTTY: stdoutWasTTY })
    if (noColor === undefined) delete process.env.NO_COLOR
    else process.env.NO_COLOR = noColor
  }
})

test('an approval, a rejection and an answer are logged with the call they settled', async () => {
  const { stream, output } = capturedConsole()
  const logger = createLogger({ stream, colors: false, console: true })
  const ask = defineTool({
    name: 'ask',
    description: 'Asks a person',
    parameters: z.object({}),
    execute: (_args, ctx) => ctx.suspend('which region?'),
  })
  const ops = defineAgent({ name: 'ops', instructions: '', tools: [deploy, ask] })
  const model = scriptedModel({
    ops: [
      { action: 'call_tool', tool: 'deploy', args: {} },
      { action: 'call_tool', tool: 'deploy', args: {} },
      { action: 'call_tool', tool: 'ask', args: {} },
      { action: 'finish', result: 'ok' },
    ],
  })
  const run = createRuntime({ agents: [ops], model, logger }).start('ops', 'ship')
  const answers = [
    () => run.approve('ops', 'ops#0.0'),
    () => run.reject('ops', 'ops#1.0', 'not on friday'),
    () => run.resume('ops', 'eu'),
  ]
  run.on('agent.suspended', () => void answers.shift()?.())
  await run.result
  await logger.close?.()
  expect(output()).toMatch(/AGENT ops approved: deploy \(call ops#0\.0\)$/m)
  expect(output()).toMatch(/AGENT ops rejected: deploy \(call ops#1\.0\) — not on friday$/m)
  expect(output()).toMatch(/AGENT ops got an answer: ask \(call ops#2\.0\)$/m)
})

test('a warning, a message and workspace conflicts each get a line, the warning as a warning', async () => {
  const { stream, output } = capturedConsole()
  const logger = createLogger({ stream, colors: false, console: true })
  const run = await runWithWarning(logger, { close: false })
  const base = { runId: run.id, at: Date.now(), elapsedMs: 5, agentId: 'lead', agentName: 'lead', depth: 0 }
  logger.handle({ ...base, type: 'agent.message', from: 'lead.a', text: 'half done' })
  logger.handle({
    ...base,
    type: 'workspace.conflicts',
    conflicts: [{ file: 'notes.md', agents: ['lead.a', 'lead.b'] }],
  })
  await logger.close()

  expect(output()).toMatch(/AGENT lead warning: depends_on "ghost" of "a" names no sibling; dropped$/m)
  expect(output()).toMatch(/AGENT lead got a message from lead\.a: half done$/m)
  expect(output()).toMatch(/AGENT lead workspace conflicts: notes\.md \(changed by lead\.a, lead\.b\)$/m)
  const event = { ...base, type: 'agent.warning', message: 'x' } as const
  expect(describeEvent(event)?.tone).toBe('warn')
})

/** A run whose launch drops a depends_on naming no sibling: a warning among info lines; the logger closed after it unless `close` is false. */
async function runWithWarning(logger: ReturnType<typeof createLogger>, { close = true } = {}): Promise<Run> {
  const child = defineAgent({ name: 'child', instructions: '' })
  const lead = defineAgent({ name: 'lead', instructions: '', subagents: [child] })
  const model = scriptedModel({
    lead: [
      {
        action: 'launch_subagents',
        agents: [{ agent: 'child', task: 'hello', id: 'a', depends_on: ['ghost'] }],
      },
      { action: 'wait_for_subagents' },
      { action: 'finish', result: 'ok' },
    ],
    child: [{ action: 'finish', result: 'hi' }],
  })
  const run = createRuntime({ agents: [lead, child], model, logger }).start('lead', 'go')
  await run.result
  if (close) await logger.close()
  return run
}

test("format 'json' writes one object per line with time, level, run, agent, type and message", async () => {
  const { stream, output } = capturedConsole()
  const runId = (await runWithWarning(createLogger({ stream, format: 'json' }))).id
  const lines = output()
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line) as Record<string, unknown>)
  expect(lines[0]).toEqual({
    time: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/),
    level: 'info',
    run: runId,
    type: 'run.started',
    message: `run ${runId} started: lead ← go`,
    elapsedMs: expect.any(Number),
  })
  expect(lines).toContainEqual(
    expect.objectContaining({
      level: 'warn',
      agent: 'lead',
      type: 'agent.warning',
      message: 'lead warning: depends_on "ghost" of "a" names no sibling; dropped',
    }),
  )
  expect(lines.at(-1)).toMatchObject({ level: 'info', type: 'run.completed' })
})

test('level picks the lines written: warn keeps warnings and failures, debug adds streamed tokens', async () => {
  const warn = capturedConsole()
  await runWithWarning(createLogger({ stream: warn.stream, colors: false, level: 'warn' }))
  expect(warn.output().trim().split('\n')).toEqual([
    expect.stringMatching(/AGENT lead warning: depends_on "ghost"/),
  ])

  const token = {
    type: 'model.token',
    turn: 0,
    text: 'Hel',
    runId: 'r1',
    agentId: 'lead',
    agentName: 'lead',
    depth: 0,
    at: Date.now(),
    elapsedMs: 3,
  } as const
  const info = capturedConsole()
  const atInfo = createLogger({ stream: info.stream, colors: false })
  atInfo.handle(token)
  await atInfo.close()
  expect(info.output()).toBe('')
  const debug = capturedConsole()
  const atDebug = createLogger({ stream: debug.stream, colors: false, level: 'debug' })
  atDebug.handle(token)
  await atDebug.close()
  expect(debug.output()).toMatch(/LLM {3}lead token \(turn 1\): "Hel"$/m)
  expect(() => createLogger({ level: 'loud' as never })).toThrow(
    /level "loud" is none of error, warn, info, debug/,
  )
})

test('createLogger refuses options of the wrong shape with an InvalidInputError naming the field and what it takes', () => {
  const refused: [Record<string, unknown>, RegExp][] = [
    // Was silently pretty: a log shipper would get lines it cannot read.
    [{ format: 'JSON' }, /^createLogger: format "JSON" is none of pretty, json$/],
    [{ format: 1 }, /^createLogger: format must be one of pretty, json, got number 1$/],
    // Was winston's plain Error.
    [
      { transports: 'console' },
      /^createLogger: transports must be a list of winston transports .*got the string "console"$/,
    ],
    [
      { transports: [{}] },
      /^createLogger: transports\[0\] is no winston transport \(an object with a log method.*; got an object$/,
    ],
    [
      { formt: 'json' },
      /^createLogger: unknown option "formt"; options are console, dir, colors, stream, level, format, transports$/,
    ],
    [{ console: 'no' }, /^createLogger: console must be true or false, got the string "no"$/],
    [{ dir: '' }, /^createLogger: dir must be the path of the folder for log files, got the string ""$/],
    [{ stream: 'stdout' }, /^createLogger: stream must be a writable stream .*got the string "stdout"$/],
  ]
  for (const [options, message] of refused) {
    const call = () => createLogger(options as never)
    expect(call, JSON.stringify(options)).toThrow(message)
    expect(call).toThrow(InvalidInputError)
  }
})

test("one's own winston transports get every line as an info object with its fields", async () => {
  const seen: Record<string, unknown>[] = []
  const mine = new Transport({
    log(info: Record<string, unknown>, next: () => void) {
      seen.push(info)
      next()
    },
  } as Transport.TransportStreamOptions)
  const runId = (await runWithWarning(createLogger({ console: false, transports: [mine] }))).id
  expect(seen[0]).toMatchObject({ level: 'info', run: runId, type: 'run.started', depth: 0 })
  expect(seen).toContainEqual(
    expect.objectContaining({ level: 'warn', type: 'agent.warning', agent: 'lead', category: 'AGENT' }),
  )
  expect(seen.at(-1)).toMatchObject({ type: 'run.completed' })
})

test('log files that cannot be written give one process warning naming the folder, and the runs go on', async () => {
  const parent = await mkdtemp(path.join(tmpdir(), 'cohort-logs-'))
  const file = path.join(parent, 'a-file')
  await writeFile(file, '')
  const dir = path.join(file, 'logs')
  const warn = vi.spyOn(process, 'emitWarning').mockImplementation(() => {})
  try {
    const logger = createLogger({ dir, console: false })
    const solo = defineAgent({ name: 'solo', instructions: '' })
    const runtime = createRuntime({
      agents: [solo],
      model: scriptedModel({ solo: [{ action: 'finish', result: 'done' }] }),
      logger,
    })
    expect(await runtime.run('solo', 'go')).toBe('done')
    expect(await runtime.run('solo', 'again')).toBe('done')
    await logger.close()
    expect(warn).toHaveBeenCalledTimes(1)
    expect(String(warn.mock.calls[0]?.[0])).toContain(`log files under ${dir} cannot be written`)
    expect(String(warn.mock.calls[0]?.[0])).toMatch(/ENOTDIR/)
  } finally {
    warn.mockRestore()
    await rm(parent, { recursive: true, force: true })
  }
})

test('a resume of a run that already ended says so, not that the run goes on', async () => {
  const solo = defineAgent({ name: 'solo', instructions: '' })
  const store = memoryStore()
  const model = scriptedModel({ solo: [{ action: 'finish', result: 'done' }] })
  await createRuntime({ agents: [solo], model, store }).run('solo', 'go', { runId: 'ended' })
  const { stream, output } = capturedConsole()
  const logger = createLogger({ stream, colors: false })
  const again = await createRuntime({ agents: [solo], model, store, logger }).resume('ended')
  expect(await again.result).toBe('done')
  await logger.close()
  expect(output().trim().split('\n')).toEqual([
    expect.stringMatching(/^\[\s+\d+ ms\] RUN {3}run ended is already completed: nothing to resume$/),
  ])
})

test("a reply's tokens are labelled prompt (in) and completion (out)", async () => {
  const { stream, output } = capturedConsole()
  const logger = createLogger({ stream, colors: false })
  const base = { runId: 'r1', at: Date.now(), elapsedMs: 9, agentId: 'lead', agentName: 'lead', depth: 0 }
  const usage = { promptTokens: 1200, completionTokens: 41 }
  logger.handle({ ...base, type: 'model.completed', turn: 0, durationMs: 7, usage })
  logger.handle({ ...base, type: 'model.completed', turn: 1, durationMs: 7, usage, usageEstimated: true })
  await logger.close()
  expect(output()).toMatch(/LLM {3}lead got a reply in 7 ms, 1200 in \+ 41 out tokens$/m)
  expect(output()).toMatch(/LLM {3}lead got a reply in 7 ms, ~1200 in \+ 41 out tokens \(estimated\)$/m)
})

test('a console stream that fails (a pipe whose reader is gone) is reported once as a warning; runs go on and the process stays up', async () => {
  const { Writable } = await import('node:stream')
  const broken = new Writable({
    write(_chunk, _encoding, callback) {
      callback(Object.assign(new Error('write EPIPE'), { code: 'EPIPE' }))
    },
  })
  const warn = vi.spyOn(process, 'emitWarning').mockImplementation(() => {})
  try {
    const logger = createLogger({ stream: broken, colors: false })
    const runtime = createRuntime({
      agents: [defineAgent({ name: 'solo' })],
      model: scriptedModel({ solo: [{ action: 'finish', result: 'done' }] }),
      logger,
    })
    expect(await runtime.run('solo', 'go')).toBe('done')
    expect(await runtime.run('solo', 'again')).toBe('done')
    await new Promise((resolve) => setTimeout(resolve, 20))
    await logger.close()
    const told = warn.mock.calls.map(([message]) => String(message)).filter((m) => m.includes('EPIPE'))
    expect(told).toEqual([
      expect.stringMatching(/cohort: the log's console stream cannot be written.*write EPIPE/),
    ])
  } finally {
    warn.mockRestore()
  }
})

test("a run's content cannot forge a log line or send the terminal an escape: newlines become spaces, control characters are shown as \\x..", async () => {
  const { stream, output } = capturedConsole()
  const logger = createLogger({ stream, colors: false })
  const runtime = createRuntime({
    agents: [defineAgent({ name: 'solo', instructions: '' })],
    model: scriptedModel({
      solo: [{ action: 'finish', result: '\u001b[2Jdone\n[ 1 ms] RUN run x completed: forged' }],
    }),
    logger,
  })
  await runtime.run('solo', 'clear\rthe screen\u009b')
  await logger.close()
  const lines = output().trimEnd().split('\n')
  // biome-ignore lint/suspicious/noControlCharactersInRegex: none may reach the console
  expect(output()).not.toMatch(/[\u001b\u009b\r]/)
  expect(lines.filter((line) => line.includes('forged'))).toHaveLength(2)
  expect(output()).toContain('solo completed in')
  expect(output()).toMatch(/: \\x1b\[2Jdone \[ 1 ms\] RUN run x completed: forged$/m)
  expect(output()).toMatch(/started: solo ← clear the screen\\x9b$/m)
})
