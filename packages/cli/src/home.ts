import { mkdir, readFile, rename, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { assertRunId, fileStore, InvalidInputError, type RunStore } from '@cohort/core'
import { z } from 'zod'

/** How a run was started, so `resume` and `cancel` can rebuild its runtime later. */
export type Launch =
  | { kind: 'config'; config: string }
  | { kind: 'parallel'; tasks: string[]; command?: string; args?: string[]; base?: string }

const launchSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('config'), config: z.string() }),
  z.object({
    kind: z.literal('parallel'),
    tasks: z.array(z.string()).min(1),
    command: z.string().optional(),
    args: z.array(z.string()).optional(),
    base: z.string().optional(),
  }),
])

/** The CLI's folder (default `.cohort`): runs, per-agent logs, workspaces, and how each run was launched. */
export class Home {
  readonly store: RunStore
  readonly runsDir: string
  readonly logsDir: string
  readonly workspacesDir: string
  private readonly launchesDir: string

  constructor(readonly dir: string) {
    this.runsDir = path.join(dir, 'runs')
    this.logsDir = path.join(dir, 'logs')
    this.workspacesDir = path.join(dir, 'workspaces')
    this.launchesDir = path.join(dir, 'launches')
    this.store = fileStore(this.runsDir)
  }

  async saveLaunch(runId: string, launch: Launch): Promise<void> {
    assertRunId(runId)
    await mkdir(this.launchesDir, { recursive: true })
    const file = path.join(this.launchesDir, `${runId}.json`)
    await writeFile(`${file}.tmp`, JSON.stringify(launch))
    await rename(`${file}.tmp`, file)
  }

  async loadLaunch(runId: string): Promise<Launch> {
    assertRunId(runId)
    const file = path.join(this.launchesDir, `${runId}.json`)
    let text: string
    try {
      text = await readFile(file, 'utf8')
    } catch {
      throw new InvalidInputError(
        `run ${runId} was not started by this cohort folder (${this.dir}): no ${path.relative(process.cwd(), file)}`,
      )
    }
    const parsed = launchSchema.safeParse(JSON.parse(text))
    if (!parsed.success)
      throw new InvalidInputError(`${file} is not a launch record: ${parsed.error.issues[0]?.message}`)
    return parsed.data as Launch
  }
}
