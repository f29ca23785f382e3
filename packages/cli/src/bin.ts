// The `cohort` program. Its own module, so that importing `@cohort/cli` (or `main`) never runs it.
import { main } from './main.js'

// `cohort show … | head`: a reader that has read enough is not an error.
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code !== 'EPIPE') throw error
  process.exit(process.exitCode ?? 0)
})

process.exitCode = await main(process.argv.slice(2))
