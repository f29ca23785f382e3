import { type ChildProcess, spawn } from 'node:child_process'
import { createRequire } from 'node:module'
import path from 'node:path'
import { pathToFileURL } from 'node:url'

export const repoRoot = path.resolve(import.meta.dirname, '../..')

/** tsx's loader by absolute URL, so a child process may run in any working directory. */
const tsxLoader = pathToFileURL(createRequire(path.join(repoRoot, 'package.json')).resolve('tsx')).href

/** Runs a TypeScript file (of the repo, or an absolute path) in a new Node process, resolving workspace packages to source. */
export function spawnTs(
  file: string,
  args: string[],
  env: Record<string, string> = {},
  cwd: string = repoRoot,
): ChildProcess {
  return spawn(
    process.execPath,
    ['--import', tsxLoader, '--conditions=source', path.resolve(repoRoot, file), ...args],
    {
      cwd,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  )
}

export interface Finished {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
}

/** Collects a process's output; `onLine` sees each stdout line as it comes (and may kill the process). */
export function collect(child: ChildProcess, onLine?: (line: string) => void): Promise<Finished> {
  let stdout = ''
  let stderr = ''
  let partial = ''
  child.stdout?.on('data', (chunk: Buffer) => {
    stdout += chunk
    partial += chunk
    const lines = partial.split('\n')
    partial = lines.pop() ?? ''
    for (const line of lines) onLine?.(line)
  })
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr += chunk
  })
  return new Promise((resolve) =>
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr })),
  )
}

/** The JSON after `result ` in a scenario's output. */
export function resultLine(stdout: string): unknown {
  const line = stdout.split('\n').find((l) => l.startsWith('result '))
  if (!line) throw new Error(`no result line in output:\n${stdout}`)
  return JSON.parse(line.slice('result '.length))
}
