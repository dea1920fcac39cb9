/**
 * A Kafka call that failed, and how to read kafkajs' errors: they nest (`cause`), and the broker's
 * error code travels as `type` (e.g. `UNKNOWN_MEMBER_ID`) somewhere along that chain.
 */
import { Data } from "effect"

export class KafkaError extends Data.TaggedError("KafkaError")<{
  readonly message: string
  readonly cause?: unknown
}> {}

/** Wrap whatever kafkajs threw, saying what was being done: `Could not commit offsets: …`. */
export const kafkaError = (what: string) => (cause: unknown) =>
  new KafkaError({ message: `${what}: ${cause instanceof Error ? cause.message : String(cause)}`, cause })

interface Link {
  readonly type?: unknown
  readonly message?: unknown
}

/** The error and its causes, outermost first (bounded: a cycle must not hang us). */
export const errorChain = (error: unknown): ReadonlyArray<Link> => {
  const out: Array<Link> = []
  let current: unknown = error
  for (let depth = 0; current !== null && typeof current === "object" && depth < 8; depth++) {
    out.push(current as Link)
    current = (current as { cause?: unknown }).cause
  }
  return out
}

/** The first broker error code (`type`) along the chain, if any. */
export const errorType = (error: unknown): string | undefined => {
  const link = errorChain(error).find((l) => typeof l.type === "string")
  return link?.type as string | undefined
}

/** Whether the broker answered with `type` anywhere along the chain. */
export const hasErrorType = (error: unknown, type: string): boolean =>
  errorChain(error).some((l) => l.type === type)

/** Every distinct message along the chain, joined: what a person needs to see. */
export const describeKafkaError = (error: unknown): string => {
  const messages = errorChain(error)
    .map((l) => String(l.message ?? ""))
    .filter((m, i, all) => m !== "" && all.indexOf(m) === i)
  return messages.join(": ") || String(error)
}
