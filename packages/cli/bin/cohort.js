#!/usr/bin/env node
// The built CLI (`pnpm build`); in this repository `pnpm cohort …` runs the TypeScript source.
import { main } from '../dist/main.js'

process.exitCode = await main(process.argv.slice(2))
