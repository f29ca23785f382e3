import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { describeRunStore } from '../../../../tests/support/run-store-conformance.js'
import { fileStore } from './file-store.js'
import { memoryStore } from './memory-store.js'

describeRunStore('memoryStore', async (options) => ({ store: memoryStore(options) }))

describeRunStore('fileStore', async (options) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'cohort-store-'))
  const cleanup = () => rm(dir, { recursive: true, force: true })
  try {
    return { store: fileStore(dir, options), cleanup }
  } catch (error) {
    await cleanup()
    throw error
  }
})
