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
 * A file that exists, as an absolute path; `label` names where it was given, such as `config ./x.ts`,
 * and `expected` what it should be (said of a folder).
 */
export async function existingFile(file: string, label: string, expected: string): Promise<string> {
  const absolute = path.resolve(file)
  const found = await stat(absolute).catch(() => undefined)
  if (!found) {
    throw new InvalidInputError(
      `${label}: no such file${label.endsWith(absolute) ? '' : ` (looked for ${absolute})`}`,
    )
  }
  if (found.isDirectory()) throw new InvalidInputError(`${label} is a folder; expected ${expected}`)
  return absolute
}

/**
 * A program to spawn: a name, checked to be on `searchPath` (the PATH it will be spawned with),
 * or a path (`./task.sh`), made absolute against `relativeTo` (a task runs in its own workspace,
 * not where it was given) and checked to be an executable file.
 */
export async function runnableCommand(
  command: string,
  label: string,
  relativeTo: string,
  searchPath = process.env.PATH ?? '',
): Promise<string> {
  if (command.trim() === '') {
    throw new InvalidInputError(`${label} is empty; expected a program: a name on PATH, or a path to one`)
  }
  if (!command.includes('/') && !command.includes(path.sep)) {
    if (await onPath(command, searchPath)) return command
    throw new InvalidInputError(
      `${label} ${command}: no such program on PATH; expected a program's name on PATH, or a path to one (./${command})`,
    )
  }
  const program = path.resolve(relativeTo, command)
  const found = await stat(program).catch(() => undefined)
  if (!found) throw new InvalidInputError(`${label} ${command}: no such file (looked for ${program})`)
  if (found.isDirectory()) throw new InvalidInputError(`${label} ${command} is a folder; expected a program`)
  await access(program, constants.X_OK).catch(() => {
    throw new InvalidInputError(`${label} ${command} is not executable (chmod +x ${program})`)
  })
  return program
}

/** True when a folder of `searchPath` holds an executable `name` (with an extension of PATHEXT on Windows). */
async function onPath(name: string, searchPath: string): Promise<boolean> {
  const extensions =
    process.platform === 'win32' ? ['', ...(process.env.PATHEXT ?? '.EXE;.CMD;.BAT').split(';')] : ['']
  for (const folder of searchPath.split(path.delimiter)) {
    if (folder === '') continue
    for (const extension of extensions) {
      const file = path.join(folder, name + extension)
      const found = await stat(file).catch(() => undefined)
      if (
        found?.isFile() &&
        (await access(file, constants.X_OK).then(
          () => true,
          () => false,
        ))
      )
        return true
    }
  }
  return false
}
