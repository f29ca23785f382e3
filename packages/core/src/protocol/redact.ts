/** Replaces configured secrets in text and values that enter a run (model replies, tool results, input). */
export type Redactor = <T>(value: T) => T

const minSecretLength = 6

/**
 * Secrets are removed where data enters, so they reach no message, event, log or stored
 * record. `OPENAI_API_KEY` is always included when set.
 */
export function createRedactor(secrets: readonly string[] = []): Redactor {
  const list = [...secrets, process.env.OPENAI_API_KEY ?? ''].filter(
    (secret) => secret.length >= minSecretLength,
  )
  if (list.length === 0) return (value) => value
  const redactText = (text: string) => {
    let out = text
    for (const secret of list) if (out.includes(secret)) out = out.replaceAll(secret, '[redacted]')
    return out
  }
  return <T>(value: T): T => {
    if (typeof value === 'string') return redactText(value) as T
    if (value === null || typeof value !== 'object') return value
    let json: string | undefined
    try {
      json = JSON.stringify(value)
    } catch {
      return value
    }
    // Only a value that holds a secret is rebuilt (losing Dates and Maps, which a secret rarely hides in).
    if (json === undefined || !list.some((secret) => json.includes(secret))) return value
    return JSON.parse(redactText(json)) as T
  }
}
