#!/usr/bin/env node
// The built CLI (`pnpm build`); in this repository `pnpm cohort …` runs the TypeScript source.
import '../dist/bin.js'
