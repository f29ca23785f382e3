/** Paths a user gave (a flag, a config field) checked before anything is stored: an `InvalidInputError` naming it (exit code 2). */
import { constants } from 'node:fs'
import { access, stat } from 'node:fs/promises'
import path from 'node:path'
import { InvalidInputError } from '@cohort/core'

/** A folder that exists; `label` names where it was given, such as `--base ./project`. */
export async function existingFolder(folder: string, label: string): Promise<string> {
  const found = await stat(folder).catch(() => undefined)
  if (!found) throw new InvalidInputError(`${label}: no such folder`)
  if (!found.isDirectory()) throw new InvalidInputError(`${label} is a file; expected a folder`)
  return folder
}

/**
 * A program to spawn: a name, looked up on PATH when it runs, or a path (`./task.sh`), made
 * absolute against `relativeTo` (a task runs in its own workspace, not where it was given) and
 * checked to be an executable file.
 */
export async function runnableCommand(command: string, label: string, relativeTo: string): Promise<string> {
  if (command.trim() === '') {
    throw new InvalidInputError(`${label} is empty; expected a program: a name on PATH, or a path to one`)
  }
  if (!command.includes('/') && !command.includes(path.sep)) return command
  const program = path.resolve(relativeTo, command)
  const found = await stat(program).catch(() => undefined)
  if (!found) throw new InvalidInputError(`${label} ${command}: no such file (looked for ${program})`)
  if (found.isDirectory()) throw new InvalidInputError(`${label} ${command} is a folder; expected a program`)
  await access(program, constants.X_OK).catch(() => {
    throw new InvalidInputError(`${label} ${command} is not executable (chmod +x ${program})`)
  })
  return program
}
