import { createHash } from 'node:crypto'
import { existsSync } from 'node:fs'
import { readdir, readFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

/** The web inspector: its page, its modules, and the libraries they import, all served by the server itself. */
export interface InspectorFiles {
  page: string
  /** The page's Content-Security-Policy: its own scripts and the import map, nothing from elsewhere. */
  contentSecurityPolicy: string
  /** By path under the server's root, e.g. `/inspector/main.js`. */
  files: Map<string, { body: Buffer; type: string }>
}

const inspectorDir = fileURLToPath(new URL('../../inspector/', import.meta.url))
const require = createRequire(import.meta.url)

/**
 * Preact and htm come from this package's own dependencies, so the inspector works offline with
 * nothing to build; the page finds them through an import map.
 */
const libraries = [
  { specifier: 'preact', file: packageFile('preact', 'dist/preact.mjs'), served: 'preact.js' },
  {
    specifier: 'preact/hooks',
    file: packageFile('preact', 'hooks/dist/hooks.mjs'),
    served: 'preact-hooks.js',
  },
  { specifier: 'htm', file: packageFile('htm', 'dist/htm.mjs'), served: 'htm.js' },
]

const types: Record<string, string> = {
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
}

export async function loadInspector(): Promise<InspectorFiles> {
  const files: InspectorFiles['files'] = new Map()
  for (const name of await readdir(inspectorDir)) {
    const type = types[path.extname(name)]
    if (type) files.set(`/inspector/${name}`, { body: await readFile(path.join(inspectorDir, name)), type })
  }
  const imports: Record<string, string> = {}
  for (const library of libraries) {
    imports[library.specifier] = `./inspector/vendor/${library.served}`
    files.set(`/inspector/vendor/${library.served}`, {
      body: await readFile(library.file),
      type: types['.js']!,
    })
  }
  const importMap = JSON.stringify({ imports })
  const template = await readFile(path.join(inspectorDir, 'index.html'), 'utf8')
  const page = template.replace('<!-- import map -->', `<script type="importmap">${importMap}</script>`)
  // An inline script runs only if its hash is in the policy: the import map is the one there is.
  const hash = createHash('sha256').update(importMap).digest('base64')
  return {
    page,
    files,
    contentSecurityPolicy: [
      "default-src 'none'",
      `script-src 'self' 'sha256-${hash}'`,
      "style-src 'self'",
      "connect-src 'self'",
      "img-src 'self' data:",
      "base-uri 'none'",
      "form-action 'none'",
      "frame-ancestors 'none'",
    ].join('; '),
  }
}

/** A file of an installed package, found from its entry point (not every package exports its package.json). */
function packageFile(name: string, file: string): string {
  let dir = path.dirname(require.resolve(name))
  while (!existsSync(path.join(dir, 'package.json')) || path.basename(dir) !== name) {
    const parent = path.dirname(dir)
    if (parent === dir) throw new Error(`cannot find the folder of package ${name}`)
    dir = parent
  }
  return path.join(dir, file)
}
