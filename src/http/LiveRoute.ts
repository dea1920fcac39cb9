/**
 * What `GET /orders/live` answers with: the encoding a client takes, the response's headers, and
 * the response as the live feed's subscriber. The `liveOrders` handler writes the events to the
 * Node response itself (taken from the platform's request), from the feed's loop: its buffered
 * bytes are what bounds a client (`live.client_buffer_bytes`), and no queue or stream per client
 * stands between.
 */
import type { ServerResponse } from "node:http"
import { Effect } from "effect"
import Negotiator from "negotiator"
import type { Encoding, Subscriber } from "../live/LiveFeed.ts"

/** gzip when the client accepts it (browsers do), else the events as they are. */
export const encodingOf = (
  headers: Readonly<Record<string, string | ReadonlyArray<string> | undefined>>
): Encoding =>
  new Negotiator({ headers: headers as Negotiator.Headers }).encoding(["gzip", "identity"]) === "gzip"
    ? "gzip"
    : "identity"

export const liveHeaders = (encoding: Encoding): Record<string, string> => ({
  "content-type": "text/event-stream",
  "cache-control": "no-store",
  // Proxies (nginx) must not hold events back to fill a buffer.
  "x-accel-buffering": "no",
  vary: "accept-encoding",
  ...(encoding === "gzip" ? { "content-encoding": "gzip" } : {})
})

/** `response` as a subscriber of the feed: its head goes out with its first bytes. */
export const subscriberOf = (response: ServerResponse, encoding: Encoding): Subscriber => {
  const head = () => {
    if (!response.headersSent) response.writeHead(200, liveHeaders(encoding))
  }
  // A write to a connection that has gone is the end of this client, not of the process: its
  // `close` follows, and ends the handler.
  response.on("error", () => undefined)
  return {
    write: (bytes, sent) => {
      head()
      response.write(bytes, () => sent())
    },
    end: (bytes) => {
      head()
      response.end(bytes)
    },
    destroy: () => {
      response.destroy()
    },
    // What the response and its socket hold, not yet handed to the kernel.
    buffered: () => response.writableLength
  }
}

/** Completes when `response`'s connection has closed (its stream ended, or the client went). */
export const closedOf = (response: ServerResponse): Effect.Effect<void> =>
  Effect.async<void>((resume) => {
    if (response.closed) return resume(Effect.void)
    const closed = () => resume(Effect.void)
    response.once("close", closed)
    return Effect.sync(() => {
      response.off("close", closed)
    })
  })
