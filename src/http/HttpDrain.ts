/**
 * When the HTTP server begins to close. Long-lived responses (the live feed) end then, rather than
 * holding the server's drain until its deadline.
 */
import { Deferred, Effect } from "effect"

export class HttpDrain extends Effect.Service<HttpDrain>()("HttpDrain", {
  effect: Effect.map(Deferred.make<void>(), (closing) => ({
    /** Closing has begun (the server calls this first thing on shutdown). */
    begin: Deferred.succeed(closing, undefined),
    /** Completes when closing begins. */
    begun: Deferred.await(closing)
  }))
}) {}
