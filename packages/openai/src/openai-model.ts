import {
  type ChatModel,
  estimateTokens,
  ModelError,
  type ModelReply,
  type ModelRequest,
  maxRetryWaitMs,
  retrying,
  type TokenUsage,
  tokensOfText,
} from '@cohort/core'
import OpenAI from 'openai'
import { toModelError, withErrorStatus } from './errors.js'
import { askedWaitMs, asTheServerSays } from './retry.js'
import { fromCompletion, type Protocol, StreamAssembler, toWireMessages, toWireTools } from './wire.js'

export interface Prices {
  /** Price of one million prompt tokens, in your currency. */
  promptPerMillion: number
  /** Price of one million completion tokens. */
  completionPerMillion: number
}

export interface OpenAIModelOptions {
  /** The model id the endpoint knows: `gpt-4o-mini`, `deepseek-chat`, `llama3.1`… */
  model: string
  /** Defaults to `OPENAI_BASE_URL`, then OpenAI's own endpoint. */
  baseURL?: string
  /** Defaults to `OPENAI_API_KEY`. Never logged, emitted or stored. */
  apiKey?: string
  /**
   * `tools`: actions as native function calls. `text`: JSON actions in the reply's text, for
   * servers without tool calling. `auto` (default): tools, switching to text for good when the
   * server refuses them.
   */
  protocol?: Protocol | 'auto'
  /** Stream the reply and emit each fragment as a `model.token` event. */
  stream?: boolean
  /**
   * Per attempt, in ms (default 120 s); without `stream`, reading the answer's body included. A
   * timed-out attempt is retried like a 5xx. Also the longest wait before a retry, with 60 s.
   */
  timeoutMs?: number
  /**
   * Retries of transient failures (429, 408, 409, 5xx, connection errors, timeouts); default 3.
   * A server asking (`Retry-After`) for a longer wait than 60 s or `timeoutMs` is not retried.
   */
  maxRetries?: number
  temperature?: number
  maxTokens?: number
  /** Prices per million tokens; with them each call reports its cost. */
  prices?: Prices
  /** Extra fields of the request body that some servers understand (`top_k`, `seed`…). */
  extraBody?: Record<string, unknown>
  headers?: Record<string, string>
  /** The name used for rate limits and in logs; defaults to `model`. */
  name?: string
  /** A fetch of your own (proxies, tests); defaults to the global one. */
  fetch?: typeof fetch
}

const defaultTimeoutMs = 120_000

/** A ChatModel for any endpoint that speaks OpenAI's chat-completions wire format. */
export function openaiModel(options: OpenAIModelOptions): ChatModel {
  // A key given empty (an unset variable passed on, `process.env.X ?? ''`) is said as such: "set OPENAI_API_KEY" would not help.
  if (options.apiKey !== undefined && options.apiKey.trim() === '') {
    throw new ModelError(
      "openaiModel: the `apiKey` given is empty; expected the endpoint's key (any text for local servers), or leave `apiKey` out to use OPENAI_API_KEY",
    )
  }
  const apiKey = options.apiKey ?? process.env.OPENAI_API_KEY
  if (!apiKey?.trim()) {
    // `OPENAI_API_KEY=` (a .env template) sets it to nothing: "set OPENAI_API_KEY" alone would puzzle.
    const found = apiKey === undefined ? 'it is not set' : 'it is set but empty'
    throw new ModelError(
      `openaiModel needs an API key: pass \`apiKey\` or set OPENAI_API_KEY (any text for local servers); ${found}`,
    )
  }
  if (!options.model) throw new ModelError('openaiModel needs `model`, the model id the endpoint serves')
  // An empty one (`OPENAI_BASE_URL=` in a .env template) is no base URL: OpenAI's own.
  const baseURL = (options.baseURL ?? process.env.OPENAI_BASE_URL) || undefined
  if (baseURL !== undefined && !URL.canParse(baseURL)) {
    throw new ModelError(
      `openaiModel: the base URL "${baseURL}" (baseURL or OPENAI_BASE_URL) is not a URL; expected e.g. http://127.0.0.1:8000/v1`,
    )
  }
  const baseFetch = options.fetch ?? globalThis.fetch
  const timeoutMs = options.timeoutMs ?? defaultTimeoutMs
  const client = new OpenAI({
    apiKey,
    baseURL: baseURL ?? null,
    timeout: timeoutMs,
    // Retried below: the SDK's wait is not ended by a cancelled run, and it waits as long as a server asks.
    maxRetries: 0,
    ...(options.headers && { defaultHeaders: options.headers }),
    logLevel: 'off',
    fetch: async (input, init) => withErrorStatus(await baseFetch(input, init)),
  })
  let protocol: Protocol | 'auto' = options.protocol ?? 'auto'

  const call = async (request: ModelRequest, as: Protocol): Promise<ModelReply> => {
    const body = requestBody(options, request, as)
    const { value: reply, retries } = await retrying(
      async (began) =>
        options.stream
          ? await streamed(client, body, request, began, timeoutMs, options.model)
          : await completed(client, body, request, timeoutMs),
      (error, retries) => asTheServerSays(error, toModelError(error, options.model, retries, client.baseURL)),
      {
        maxRetries: options.maxRetries ?? 3,
        maxWaitMs: Math.min(maxRetryWaitMs, timeoutMs),
        signal: request.signal,
        onRetry: request.onRetry,
        askedWaitMs,
      },
    )
    const counted: ModelReply = reply.usage
      ? reply
      : { ...reply, usage: estimatedUsage(request, body, reply), usageEstimated: true }
    return withCost({ ...counted, ...(retries > 0 && { retries }) }, options.prices)
  }

  return {
    name: options.name ?? options.model,
    secrets: [apiKey],
    // Retried here, where a server's Retry-After and a stream's shown fragments are known.
    handlesRetries: true,
    ...(options.maxTokens !== undefined && { maxTokens: options.maxTokens }),
    async complete(request) {
      if (protocol !== 'auto') return call(request, protocol)
      try {
        const reply = await call(request, 'tools')
        protocol = 'tools'
        return reply
      } catch (error) {
        if (!refusesTools(error)) throw error
        protocol = 'text'
        return call(request, 'text')
      }
    },
  }
}

/**
 * `openaiModel` configured from the environment when `OPENAI_API_KEY` is set (`OPENAI_BASE_URL`,
 * and `COHORT_MODEL` for the model id, default `gpt-4o-mini`); otherwise `offline`.
 */
export function modelFromEnv(offline: ChatModel, overrides: Partial<OpenAIModelOptions> = {}): ChatModel {
  if (!process.env.OPENAI_API_KEY && !overrides.apiKey) return offline
  return openaiModel({ model: process.env.COHORT_MODEL ?? 'gpt-4o-mini', ...overrides })
}

type Body = Omit<OpenAI.Chat.Completions.ChatCompletionCreateParamsNonStreaming, 'stream'>

function requestBody(options: OpenAIModelOptions, request: ModelRequest, protocol: Protocol): Body {
  const body: Body = {
    ...options.extraBody,
    model: options.model,
    messages: toWireMessages(request.messages, protocol),
  }
  if (protocol === 'tools' && request.tools.length > 0) body.tools = toWireTools(request.tools)
  if (options.temperature !== undefined) body.temperature = options.temperature
  if (options.maxTokens !== undefined) body.max_tokens = options.maxTokens
  return body
}

/**
 * A call answered whole. The SDK's timeout ends when the answer's headers arrive, and it reads a
 * body not labelled JSON after that: so `timeoutMs` bounds the whole attempt here, and a body that
 * never ends is a timed-out attempt (retried), not a call that hangs.
 */
async function completed(
  client: OpenAI,
  body: Body,
  request: ModelRequest,
  timeoutMs: number,
): Promise<Omit<ModelReply, 'cost' | 'retries'>> {
  const deadline = AbortSignal.timeout(timeoutMs)
  try {
    return fromCompletion(
      await client.chat.completions.create(
        { ...body, stream: false },
        { signal: AbortSignal.any([request.signal, deadline]) },
      ),
    )
  } catch (error) {
    if (deadline.aborted && !request.signal.aborted) throw new OpenAI.APIConnectionTimeoutError()
    throw error
  }
}

/**
 * A streamed call. The SDK's timeout ends when the answer's headers arrive, and its stream ends
 * quietly when aborted: so a stream that goes silent for `idleMs` fails the call here, and one
 * cut short by the caller's signal is not taken as the whole reply.
 */
async function streamed(
  client: OpenAI,
  body: Body,
  request: ModelRequest,
  began: () => void,
  idleMs: number,
  model: string,
): Promise<Omit<ModelReply, 'cost' | 'retries'>> {
  const stalled = new AbortController()
  const stream = await client.chat.completions.create(
    { ...body, stream: true, stream_options: { include_usage: true } },
    { signal: AbortSignal.any([request.signal, stalled.signal]) },
  )
  const assembler = new StreamAssembler()
  const idle = setTimeout(() => stalled.abort(), idleMs)
  try {
    for await (const chunk of stream) {
      idle.refresh()
      const fragment = assembler.add(chunk)
      if (fragment) {
        // Sent fragments would be sent again by a retry.
        began()
        request.onToken?.(fragment)
      }
    }
  } catch (error) {
    // The SDK's JSON.parse of one event: toModelError would blame the body, which is a stream.
    if (!(error instanceof SyntaxError)) throw error
    throw new ModelError(
      `model ${model}: malformed response, an event of the stream is not JSON: ${error.message}`,
      {
        cause: error,
      },
    )
  } finally {
    clearTimeout(idle)
  }
  request.signal.throwIfAborted()
  if (stalled.signal.aborted) {
    // Retried only when no fragment was sent as a token (`began`): those would be sent again.
    throw new ModelError(`model ${model}: the stream stalled, nothing came for ${idleMs} ms (timeoutMs)`, {
      retryable: true,
    })
  }
  return assembler.reply()
}

/**
 * The tokens of a call whose server reported none (some local servers, proxies, streams without
 * `include_usage`): its prompt as the scheduler estimates one, and the reply at four characters a
 * token. Without it token budgets and metrics would count nothing.
 */
function estimatedUsage(request: ModelRequest, body: Body, reply: ModelReply): TokenUsage {
  let characters = reply.text?.length ?? 0
  for (const call of reply.toolCalls ?? []) {
    characters +=
      call.name.length +
      (typeof call.arguments === 'string' ? call.arguments : JSON.stringify(call.arguments)).length
  }
  return {
    promptTokens: estimateTokens({ messages: request.messages, tools: body.tools ? request.tools : [] }),
    completionTokens: tokensOfText(characters),
  }
}

function withCost(reply: ModelReply, prices: Prices | undefined): ModelReply {
  if (!prices || !reply.usage) return reply
  return { ...reply, cost: costOf(reply.usage, prices) }
}

export function costOf(usage: TokenUsage, prices: Prices): number {
  return (
    (usage.promptTokens * prices.promptPerMillion + usage.completionTokens * prices.completionPerMillion) /
    1e6
  )
}

/**
 * A server that does not take tools says so in a 400, 404 or 422 naming them. A request too long
 * for the model's context names them too ("including 312 in the functions"): that is not it.
 */
function refusesTools(error: unknown): boolean {
  return (
    error instanceof ModelError &&
    (error.status === 400 || error.status === 404 || error.status === 422) &&
    /tool|function/i.test(error.message) &&
    // A tool's schema the server refuses is the tool's fault, not a server without tools.
    !/parameters|schema/i.test(error.message) &&
    !/context length|context window|maximum context|too many tokens|reduce the length/i.test(error.message)
  )
}
