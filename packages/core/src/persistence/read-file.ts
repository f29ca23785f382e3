import { readFile } from 'node:fs/promises'
import { StoreError } from '../errors.js'

/** A file's text, or undefined when there is no such file; any other failure is a `StoreError`. */
export async function readIfExists(file: string): Promise<string | undefined> {
  try {
    return await readFile(file, 'utf8')
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw new StoreError(`could not read ${file}: ${(error as Error).message}`, { cause: error })
  }
}
