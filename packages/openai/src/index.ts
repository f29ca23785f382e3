export { costOf, modelFromEnv, type OpenAIModelOptions, openaiModel, type Prices } from './openai-model.js'
export type { Protocol } from './wire.js'
