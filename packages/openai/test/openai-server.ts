import { createServer, type IncomingHttpHeaders, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'

/** One request as the server received it. */
export interface Received {
  path: string
  headers: IncomingHttpHeaders
  body: Record<string, unknown> & { messages?: { role: string; content: string | null }[]; tools?: unknown[] }
  at: number
}

/** What the server answers: a JSON body, an SSE stream, raw text, or a dropped connection. */
export type Answer =
  | { json: unknown; status?: number; headers?: Record<string, string>; delayMs?: number }
  /**
   * `stallAfter`: chunks sent before the stream goes silent, the connection left open.
   * `resetAfter`: chunks sent before the connection is destroyed.
   */
  | { sse: unknown[]; delayMs?: number; chunkDelayMs?: number; stallAfter?: number; resetAfter?: number }
  /** `open`: the body is begun and never ended, the connection left open. */
  | { raw: string; status?: number; contentType?: string; delayMs?: number; open?: boolean }
  | { reset: true }

export type Responder = (request: Received, index: number) => Answer

export interface OpenAIServer {
  baseURL: string
  requests: Received[]
  close(): Promise<void>
}

/** A real HTTP server on 127.0.0.1 speaking the chat-completions wire format, as the tests script it. */
export async function startOpenAIServer(respond: Responder): Promise<OpenAIServer> {
  const requests: Received[] = []
  const server: Server = createServer((req, res) => {
    const parts: Buffer[] = []
    req.on('data', (part: Buffer) => parts.push(part))
    req.on('end', () => {
      const received: Received = {
        path: req.url ?? '',
        headers: req.headers,
        body: JSON.parse(Buffer.concat(parts).toString('utf8') || '{}'),
        at: Date.now(),
      }
      requests.push(received)
      const answer = respond(received, requests.length - 1)
      void send(answer, res, req.socket)
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    baseURL: `http://127.0.0.1:${port}/v1`,
    requests,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
}

async function send(
  answer: Answer,
  res: import('node:http').ServerResponse,
  socket: import('node:net').Socket,
): Promise<void> {
  if ('reset' in answer) {
    socket.destroy()
    return
  }
  if (answer.delayMs) await pause(answer.delayMs)
  if (res.destroyed) return
  if ('json' in answer) {
    res.writeHead(answer.status ?? 200, { 'content-type': 'application/json', ...answer.headers })
    res.end(JSON.stringify(answer.json))
  } else if ('raw' in answer) {
    res.writeHead(answer.status ?? 200, { 'content-type': answer.contentType ?? 'application/json' })
    if (answer.open) res.write(answer.raw)
    else res.end(answer.raw)
  } else {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' })
    for (const [index, chunk] of answer.sse.entries()) {
      if (index === answer.stallAfter) return
      if (index === answer.resetAfter) {
        // Let the chunks sent reach the client before the connection goes.
        await pause(50)
        socket.destroy()
        return
      }
      res.write(`data: ${JSON.stringify(chunk)}\n\n`)
      if (answer.chunkDelayMs) await pause(answer.chunkDelayMs)
    }
    res.end('data: [DONE]\n\n')
  }
}

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** A chat completion body. */
export function completion(
  reply: {
    content?: string | null
    toolCalls?: { name: string; arguments: unknown }[]
    /** Default `tool_calls` with tool calls, else `stop`. */
    finishReason?: string
  },
  /** `null`: a server that reports no usage. */
  usage: { prompt_tokens: number; completion_tokens: number } | null = {
    prompt_tokens: 100,
    completion_tokens: 20,
  },
): unknown {
  const toolCalls = reply.toolCalls?.map((call, index) => ({
    id: `call_${index}_${Math.random().toString(36).slice(2, 8)}`,
    type: 'function',
    function: { name: call.name, arguments: JSON.stringify(call.arguments) },
  }))
  return {
    id: 'chatcmpl-test',
    object: 'chat.completion',
    created: 1_700_000_000,
    model: 'test-model',
    choices: [
      {
        index: 0,
        finish_reason: reply.finishReason ?? (toolCalls ? 'tool_calls' : 'stop'),
        message: {
          role: 'assistant',
          content: reply.content ?? null,
          ...(toolCalls && { tool_calls: toolCalls }),
        },
      },
    ],
    ...(usage && { usage: { ...usage, total_tokens: usage.prompt_tokens + usage.completion_tokens } }),
  }
}

/** The chunks of a streamed completion: text fragments, then a tool call split in two, then usage. */
export function streamChunks(
  fragments: string[],
  toolCall?: { name: string; arguments: unknown },
): unknown[] {
  const base = {
    id: 'chatcmpl-stream',
    object: 'chat.completion.chunk',
    created: 1_700_000_000,
    model: 'test-model',
  }
  const chunks: unknown[] = fragments.map((content) => ({
    ...base,
    choices: [{ index: 0, delta: { content }, finish_reason: null }],
  }))
  if (toolCall) {
    const args = JSON.stringify(toolCall.arguments)
    const half = Math.floor(args.length / 2)
    chunks.push(
      {
        ...base,
        choices: [
          {
            index: 0,
            delta: {
              tool_calls: [
                {
                  index: 0,
                  id: 'call_s1',
                  type: 'function',
                  function: { name: toolCall.name, arguments: args.slice(0, half) },
                },
              ],
            },
            finish_reason: null,
          },
        ],
      },
      {
        ...base,
        choices: [
          {
            index: 0,
            delta: { tool_calls: [{ index: 0, function: { arguments: args.slice(half) } }] },
            finish_reason: null,
          },
        ],
      },
    )
  }
  chunks.push({ ...base, choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] })
  chunks.push({ ...base, choices: [], usage: { prompt_tokens: 50, completion_tokens: 7, total_tokens: 57 } })
  return chunks
}

/** The text of the last message of a request. */
export function lastMessage(request: Received): string {
  return request.body.messages?.at(-1)?.content ?? ''
}
