import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { expect, test } from 'vitest'
import { Workspaces } from './workspaces.js'

test('what an ended agent changed is read once for its run: later waits compare new agents with it without reading it again', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'cohort-ws-'))
  try {
    const base = path.join(dir, 'base')
    await mkdir(base)
    await writeFile(path.join(base, 'notes.txt'), 'base\n')
    const workspaces = new Workspaces({ root: path.join(dir, 'ws'), base })
    await writeFile(path.join(await workspaces.ensure('r1', 'a'), 'notes.txt'), 'a\n')
    await writeFile(path.join(await workspaces.ensure('r1', 'b'), 'notes.txt'), 'b\n')
    expect(await workspaces.conflicts('r1', ['a', 'b'], new Set(['a', 'b']))).toEqual([
      { file: 'notes.txt', agents: ['a', 'b'] },
    ])
    // Ended agents' workspaces change no more; were one touched, the run still reads what it read.
    await writeFile(path.join(workspaces.pathOf('r1', 'a'), 'late.txt'), 'late\n')
    await writeFile(path.join(await workspaces.ensure('r1', 'c'), 'late.txt'), 'c\n')
    expect(await workspaces.conflicts('r1', ['a', 'c'], new Set(['a']))).toEqual([])
    // A run that left memory reads them again.
    workspaces.forget('r1')
    expect(await workspaces.conflicts('r1', ['a', 'c'])).toEqual([{ file: 'late.txt', agents: ['a', 'c'] }])
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
})

test('workspaces inside their own base are refused when made, not at the first copy', () => {
  const base = path.join(tmpdir(), 'project')
  expect(() => new Workspaces({ root: path.join(base, '.cohort', 'workspaces'), base })).toThrow(
    /are inside their base .*: each would hold a copy of itself/,
  )
})

test('conflicts compare against the base as the run first copied it, though it changed since', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'cohort-ws-'))
  try {
    const base = path.join(dir, 'base')
    await mkdir(base)
    await writeFile(path.join(base, 'x.txt'), 'first\n')
    const workspaces = new Workspaces({ root: path.join(dir, 'ws'), base })
    await workspaces.ensure('r1', 'a')
    await workspaces.ensure('r1', 'b')
    // Someone edits the base while the agents work; they changed nothing.
    await writeFile(path.join(base, 'x.txt'), 'edited\n')
    expect(await workspaces.conflicts('r1', ['a', 'b'])).toEqual([])
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
})

test('a workspace is a folder under the root: an id that is a path is refused, not followed out of it', async () => {
  const workspaces = new Workspaces({ root: path.join(tmpdir(), 'cohort-ws-ids') })
  expect(() => workspaces.pathOf('r1', '../../escaped')).toThrow(/invalid agent id "..\/..\/escaped"/)
  expect(() => workspaces.pathOf('../r1', 'a')).toThrow(/invalid run id/)
  expect(() => workspaces.ensure('r1', '/abs')).toThrow(/invalid agent id/)
  expect(workspaces.pathOf('r1', 'lead.a')).toBe(path.join(tmpdir(), 'cohort-ws-ids', 'r1', 'lead.a'))
})
