import { OpenAPIHono } from '@hono/zod-openapi'
import { cors } from 'hono/cors'
import { methodNotAllowed } from 'hono/method-not-allowed'
import { secureHeaders } from 'hono/secure-headers'
import type { Access } from './access.js'
import { type ApiHost, registerApi, type ServerEnv } from './api.js'
import { onError, type Refusal, refusalOf, validationHook } from './errors.js'
import type { InspectorFiles } from './inspector-files.js'

export interface AppParts {
  access: Access
  /** Origins other than the server's own that may call the API: they get CORS answers. */
  allowOrigins: readonly string[]
  inspector: InspectorFiles
  api: ApiHost
  /** Told of each request refused for who sent it (see `Refusal`). */
  onRefused?: ((refusal: Refusal) => void) | undefined
}

/**
 * The whole HTTP side, in the order a request meets it: security headers, Host and Origin, then the
 * token for everything under /api (WebSocket upgrades included), then the route with its schemas.
 */
export function createApp({
  access,
  allowOrigins,
  inspector,
  api,
  onRefused,
}: AppParts): OpenAPIHono<ServerEnv> {
  const app = new OpenAPIHono<ServerEnv>({ defaultHook: validationHook })
  app.onError((error, c) => {
    const refusal = onRefused && refusalOf(error, c)
    if (refusal) onRefused(refusal)
    return onError(error, c)
  })
  app.notFound((c) =>
    c.json({ error: `no such endpoint: ${c.req.path}; the API is described at /api/openapi.json` }, 404),
  )
  app.use(
    methodNotAllowed({
      app,
      onMethodNotAllowed: (c, methods) =>
        c.json(
          { error: `${c.req.method} is not allowed on ${c.req.path}; expected ${methods.join(', ')}` },
          405,
          {
            allow: methods.join(', '),
          },
        ),
    }),
  )
  app.use(
    secureHeaders({
      // Whether HTTPS is used is for the proxy in front to say, not this server.
      strictTransportSecurity: false,
      // No page leaks its address (the sign-in URL holds the token) through Referer.
      referrerPolicy: 'no-referrer',
    }),
  )
  app.use(async (c, next) => {
    await next()
    c.header('content-security-policy', inspector.contentSecurityPolicy)
  })
  app.use(access.checkCaller)
  if (allowOrigins.length > 0) {
    app.use(
      '/api/*',
      cors({
        origin: [...allowOrigins],
        credentials: true,
        allowHeaders: ['authorization', 'content-type'],
        allowMethods: ['GET', 'POST'],
      }),
    )
  }
  app.use('/api/*', access.check)

  app.get('/', (c) => {
    // Opened with ?token=: keep it in a cookie (when it is right) and drop it from the address bar and history.
    if (access.signIn(c)) return c.redirect('./', 303)
    return c.html(inspector.page, 200, { 'cache-control': 'no-store' })
  })
  app.get('/inspector/*', (c) => {
    const file = inspector.files.get(c.req.path)
    if (!file) return c.json({ error: `no such file: ${c.req.path}` }, 404)
    return c.body(new Uint8Array(file.body), 200, { 'content-type': file.type, 'cache-control': 'no-cache' })
  })

  registerApi(app, api)
  app.openAPIRegistry.registerComponent('securitySchemes', 'token', {
    type: 'http',
    scheme: 'bearer',
    description: 'the token `cohort serve` printed (or the inspector’s cookie)',
  })
  app.doc31('/api/openapi.json', {
    openapi: '3.1.0',
    info: { title: 'Cohort server', version: '1', description: 'Runs, their agents, and their events.' },
    security: [{ token: [] }],
  })
  return app
}
