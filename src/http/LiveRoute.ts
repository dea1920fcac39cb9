/**
 * What `GET /orders/live` answers with, whichever way it comes in (the server's fast path or the
 * router's handler): the encoding a client takes and the response's headers.
 */
import Negotiator from "negotiator"
import type { Encoding } from "../live/LiveFeed.ts"

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
