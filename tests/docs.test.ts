// The docs are a contract users drive Cohort through: what they name must exist, and what the
// code has must be in them. Each check reads the docs as text, so a rename on either side fails.
import { readdir, readFile } from 'node:fs/promises'
import path from 'node:path'
import * as bullmq from '@cohort/bullmq'
import * as cli from '@cohort/cli'
import * as core from '@cohort/core'
import * as openai from '@cohort/openai'
import * as postgres from '@cohort/postgres'
import { describe, expect, test } from 'vitest'
import { agentSummaryShape } from '../packages/cli/src/server/api-shapes.js'
import { cohortEventTypes } from '../packages/core/src/index.js'
import { repoRoot } from './support/processes.js'

const packages = ['core', 'openai', 'postgres', 'bullmq', 'cli']
const read = (file: string) => readFile(path.join(repoRoot, file), 'utf8')
const guides = async () =>
  [
    await read('README.md'),
    await read('packages/bullmq/README.md'),
    ...(await Promise.all(['architecture', 'openai', 'server'].map((n) => read(`docs/${n}.md`)))),
  ].join('\n')

/** Every source module of a package (tests and their fixtures aside), relative to its src. */
async function modules(pkg: string): Promise<string[]> {
  const src = path.join(repoRoot, 'packages', pkg, 'src')
  const entries = await readdir(src, { recursive: true })
  return entries
    .filter((file) => file.endsWith('.ts') && !/\.(test|fixture)\.ts$/.test(file))
    .map((file) => file.split(path.sep).join('/'))
    .sort()
}

describe('the docs and the code name the same things', () => {
  test("README's event list is cohortEventTypes", async () => {
    const readme = await read('README.md')
    const line = /^Every step is a typed event \(([^)]+)\), available/m.exec(readme)?.[1]
    expect(line, 'the sentence of README that lists the events').toBeDefined()
    const listed = [...line!.matchAll(/`([a-z]+)\.([a-z/]+)`/g)].flatMap(([, kind, names]) =>
      names!.split('/').map((name) => `${kind}.${name}`),
    )
    expect(listed.sort()).toEqual([...cohortEventTypes].sort())
  })

  test('every module under packages/*/src is in the module map of docs/architecture.md, and every file it names exists', async () => {
    const doc = await read('docs/architecture.md')
    // The map's rows, by the package their section's heading names.
    const rows = new Map<string, string[][]>()
    for (const section of doc.split(/^## /m)) {
      const pkgs = [...section.split('\n')[0]!.matchAll(/packages\/(\w+)\/src/g)].map(([, pkg]) => pkg!)
      const cells = [...section.matchAll(/^\| (`[^|]+) \|/gm)].map(([, cell]) =>
        [...cell!.matchAll(/`([^`]+)`/g)].map(([, token]) => token!),
      )
      for (const pkg of pkgs) rows.set(pkg, [...(rows.get(pkg) ?? []), ...cells])
    }
    const missing: string[] = []
    for (const pkg of packages) {
      const files = await modules(pkg)
      // Other packages' sections name their files `pkg/…`; core's, and the adapter's own, without.
      const others = packages.filter((other) => other !== pkg).map((other) => `${other}/`)
      const tokens = (rows.get(pkg) ?? []).map((cell) =>
        cell
          .filter((token) => !others.some((other) => token.startsWith(other)))
          .map((token) => token.replace(`${pkg}/`, '')),
      )
      for (const file of files) {
        if (file === 'index.ts') continue
        const dir = file.includes('/') ? `${file.slice(0, file.lastIndexOf('/'))}/` : ''
        const name = file.slice(dir.length)
        const named = tokens.some(
          (cell) =>
            cell.includes(file) ||
            (dir !== '' && cell.includes(dir)) ||
            cell.some(
              (token) => token.includes('*') && new RegExp(`^${token.replace('*', '[\\w-]+')}$`).test(file),
            ) ||
            (cell.includes(name) && (dir === '' || cell.some((token) => token.startsWith(dir)))),
        )
        if (!named) missing.push(`packages/${pkg}/src/${file}`)
      }
      for (const cell of tokens)
        for (const token of cell.filter((t) => /^[\w/.-]+\.ts$/.test(t) && t.includes('/')))
          if (!files.includes(token)) missing.push(`${token} (named in the map, not in packages/${pkg}/src)`)
    }
    expect(missing).toEqual([])
  })

  test('every function and error class the guides name is exported, and the methods of Run and Runtime exist', async () => {
    const text = await guides()
    const exported: Record<string, unknown> = { ...core, ...openai, ...postgres, ...bullmq, ...cli }
    // Names the guides call that are not Cohort's own exports: XState's, the inspector's, methods.
    const others = new Set([
      'createActor',
      'createBrowserInspector',
      'getPersistedSnapshot',
      'resume',
      'handle',
      'close',
    ])
    const functions = [...new Set([...text.matchAll(/`([a-z][A-Za-z]+)\(/g)].map(([, name]) => name!))]
    expect(functions.length).toBeGreaterThan(20)
    expect(functions.filter((name) => !others.has(name) && typeof exported[name] !== 'function')).toEqual([])
    // DelayedError is BullMQ's own, which the bullmq guide names.
    const errors = [
      ...new Set([...text.matchAll(/`([A-Z][A-Za-z]+Error)`/g)].map(([, name]) => name!)),
    ].filter((name) => name !== 'DelayedError')
    expect(errors.length).toBeGreaterThan(10)
    for (const name of errors) {
      const ErrorClass = exported[name] as (new (...args: never[]) => unknown) | undefined
      expect(typeof ErrorClass, name).toBe('function')
      expect(ErrorClass!.prototype instanceof core.CohortError || ErrorClass === core.CohortError, name).toBe(
        true,
      )
    }
    const agent = core.defineAgent({ name: 'lead', instructions: 'finish' })
    const runtime = core.createRuntime({
      agents: [agent],
      model: core.scriptedModel({ lead: [{ action: 'finish', result: 'done' }] }),
    })
    const run = runtime.start('lead', 'task')
    await run.result
    const members = (owner: string) => [
      ...text.matchAll(new RegExp(`\\b${owner}\\.([a-z][A-Za-z]+)\\b`, 'g')),
    ]
    // `run.started`, `run.ts`: an event type or a file, not a member.
    const runMembers = members('run')
      .map(([, name]) => name!)
      .filter((name) => !cohortEventTypes.includes(`run.${name}` as never) && name !== 'ts')
    expect(runMembers.filter((name) => !(name in run))).toEqual([])
    const runtimeMembers = members('runtime')
      .map(([, name]) => name!)
      .filter((name) => !['ts', 'test'].includes(name))
    expect(runtimeMembers.filter((name) => !(name in runtime))).toEqual([])
    await runtime.shutdown()
  })

  test("docs/server.md's AgentSummary names the fields the API answers with", async () => {
    const guide = await read('docs/server.md')
    const written = /`AgentSummary` is `\{([\s\S]+?)\}`;/.exec(guide)?.[1]
    expect(written, 'the sentence of docs/server.md that gives AgentSummary').toBeDefined()
    // Top-level fields only: what is inside a field's own braces or parentheses is its detail.
    let flat = written!
    for (let before = ''; before !== flat; ) {
      before = flat
      flat = flat.replace(/\{[^{}]*\}|\([^()]*\)/g, '')
    }
    const fields = flat.split(',').map((field) => /^\s*(\w+)/.exec(field)![1]!)
    expect(fields.sort()).toEqual(Object.keys(agentSummaryShape.shape).sort())
  })

  test('every error code the guides name is one the code raises', async () => {
    const text = await guides()
    // Environment variables are written the same way; they are not codes.
    const env = /^(COHORT|OPENAI|DATABASE|REDIS|NO)_/
    const codes = [...new Set([...text.matchAll(/`([A-Z][A-Z_]{3,})`/g)].map(([, code]) => code!))].filter(
      (code) => !env.test(code),
    )
    expect(codes.length).toBeGreaterThan(5)
    const sources: string[] = []
    for (const pkg of packages)
      for (const file of await modules(pkg)) sources.push(await read(`packages/${pkg}/src/${file}`))
    const source = sources.join('\n')
    expect(codes.filter((code) => !source.includes(`'${code}'`))).toEqual([])
  })

  test('every test the guides name as a proof exists, with the title they give', async () => {
    const text = await guides()
    const cited = [
      ...text.matchAll(/`((?:tests|packages)\/[\w/.-]+\.test\.ts)` › ((?:"[^"]+"(?:,? (?:and )?)?)+)/g),
    ]
    expect(cited.length).toBeGreaterThan(5)
    const missing: string[] = []
    for (const [, file, titles] of cited) {
      const source = await read(file!).catch(() => '')
      for (const [, title] of titles!.matchAll(/"([^"]+)"/g)) {
        // A title cut short ends with "…"; the test's own title begins with what is given.
        const given = title!.replace(/…$/, '')
        if (!source.includes(given)) missing.push(`${file} › ${title}`)
      }
    }
    expect(missing).toEqual([])
  })
})
