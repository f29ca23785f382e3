// The `cohort` program. Its own module, so that importing `@cohort/cli` (or `main`) never runs it.
import { main } from './main.js'

process.exitCode = await main(process.argv.slice(2))
