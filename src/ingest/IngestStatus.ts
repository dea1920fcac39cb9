/**
 * Whether ingestion is running, for `/readyz`, and whether it has stopped by itself, for the
 * process to exit: a service that can no longer ingest should not go on serving as if it could.
 */
import { Cause, Data, Deferred, Effect, Ref } from "effect"

/** Ingestion stopped by itself (not for a shutdown): the service can no longer do its job. */
export class IngestStopped extends Data.TaggedError("IngestStopped")<{
  readonly message: string
  readonly cause: Cause.Cause<unknown>
}> {
  static fromCause(cause: Cause.Cause<unknown>): IngestStopped {
    const error = Cause.squash(cause)
    const reason = error instanceof Error ? error.message : String(error)
    return new IngestStopped({ message: `Ingestion stopped: ${reason}`, cause })
  }
}

export class IngestStatus extends Effect.Service<IngestStatus>()("IngestStatus", {
  effect: Effect.gen(function* () {
    const running = yield* Ref.make(false)
    const stopped = yield* Deferred.make<never, IngestStopped>()
    return {
      /** Consuming: `/readyz` reports it. */
      running: Ref.get(running),
      set: (value: boolean) => Ref.set(running, value),
      /** Never succeeds; fails once ingestion has stopped by itself. The process waits on it to exit. */
      stoppedByItself: Deferred.await(stopped),
      stop: (error: IngestStopped) => Deferred.fail(stopped, error).pipe(Effect.asVoid)
    }
  })
}) {}
