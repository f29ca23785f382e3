import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { describeRunStore } from '../../../../tests/support/run-store-conformance.js'
import { fileStore } from './file-store.js'
import { memoryStore } from './memory-store.js'

describeRunStore('memoryStore', async () => ({ store: memoryStore() }))

describeRunStore('fileStore', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'cohort-store-'))
  return { store: fileStore(dir), cleanup: () => rm(dir, { recursive: true, force: true }) }
})
