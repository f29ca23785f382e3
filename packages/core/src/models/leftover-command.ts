import { readdir, readFile, rm, writeFile } from 'node:fs/promises'

/**
 * A workspace's running command, noted beside the workspace (`<workspace>.command.json`) while
 * it runs: its process group, and a token in its environment. A process killed without ending it
 * (kill -9) leaves the command running, and the turn runs again on resume; the next command of
 * the workspace stops the one left first, so the two never run side by side in it. The token
 * tells the group from an unrelated one that took its number since. Linux only (`/proc`).
 */
interface NotedCommand {
  pgid: number
  token: string
}

/** The variable that carries the token into the command's environment. */
export const commandTokenVariable = 'COHORT_COMMAND_TOKEN'

const noteOf = (workspace: string) => `${workspace}.command.json`

export function noteCommand(workspace: string, command: NotedCommand): Promise<void> {
  return writeFile(noteOf(workspace), JSON.stringify(command))
}

/** The command ended: its note goes, unless a later command's replaced it. */
export async function forgetCommand(workspace: string, token: string): Promise<void> {
  const noted = await readNote(workspace)
  if (noted?.token === token) await rm(noteOf(workspace), { force: true })
}

/** Kills the command a dead process left running in the workspace, and waits until it is gone. */
export async function stopLeftoverCommand(workspace: string): Promise<void> {
  const noted = await readNote(workspace)
  if (!noted) return
  if (await groupLives(noted)) {
    try {
      process.kill(-noted.pgid, 'SIGKILL')
    } catch {
      // Gone meanwhile.
    }
    for (let waited = 0; waited < 2_000 && (await groupLives(noted)); waited += 20)
      await new Promise((resolve) => setTimeout(resolve, 20))
  }
  await rm(noteOf(workspace), { force: true })
}

async function readNote(workspace: string): Promise<NotedCommand | undefined> {
  try {
    const noted = JSON.parse(await readFile(noteOf(workspace), 'utf8')) as Partial<NotedCommand>
    if (Number.isInteger(noted.pgid) && (noted.pgid ?? 0) > 1 && typeof noted.token === 'string')
      return { pgid: noted.pgid!, token: noted.token }
  } catch {}
  return undefined
}

/** A live (not zombie) process of the group that has the token in its environment. */
async function groupLives({ pgid, token }: NotedCommand): Promise<boolean> {
  let pids: string[]
  try {
    pids = (await readdir('/proc')).filter((name) => /^\d+$/.test(name))
  } catch {
    return false
  }
  const mark = `${commandTokenVariable}=${token}`
  for (const pid of pids) {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '')
    // `pid (name) state ppid pgrp …`: the name may hold spaces and parentheses.
    const [state, , pgrp] = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    if (Number(pgrp) !== pgid || state === 'Z') continue
    const environ = await readFile(`/proc/${pid}/environ`, 'utf8').catch(() => '')
    if (environ.split('\0').includes(mark)) return true
  }
  return false
}
