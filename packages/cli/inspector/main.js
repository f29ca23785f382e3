// @ts-check
// The web inspector: runs, a run's live agent tree and timeline, and one agent's detail, rendered
// with Preact from what the server's API and event socket say.
import { render } from 'preact'
import { App } from './app.js'
import { html } from './html.js'
import { applyHash, connect, pollWhileDisconnected, refreshRuns } from './store.js'

window.addEventListener('hashchange', applyHash)
window.addEventListener('popstate', applyHash)
render(html`<${App} />`, document.body)
applyHash()
refreshRuns(true)
connect()
pollWhileDisconnected()
