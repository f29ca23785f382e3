// The `cohort` program. Its own module, so that importing `@cohort/cli` (or `main`) never runs it.
import { main } from './main.js'

// `cohort show … | head`: a reader that has read enough is not an error; what is left to print is
// dropped. Not an exit here: a run being watched is stopped and stored first (see `follow`).
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code !== 'EPIPE') throw error
})

process.exitCode = await main(process.argv.slice(2))
