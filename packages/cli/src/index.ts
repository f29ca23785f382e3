export { type CohortConfig, defineConfig, loadConfig } from './config.js'
export { main } from './main.js'
export { type CohortServer, type InFlight, type ServerOptions, startServer } from './server/server.js'
export type { AgentSummary, RunView } from './views.js'
