import { Data } from "effect"

/** Why the embedded PostgreSQL server could not be started; the message is one line. */
export class EmbeddedPostgresError extends Data.TaggedError("EmbeddedPostgresError")<{
  readonly message: string
  readonly cause?: unknown
}> {}
