/** A server-sent events client for tests: reads `GET /orders/live` as a browser would. */
import { gunzipSync } from "node:zlib"
import { Effect } from "effect"

/**
 * A whole HTTP/1.0 response as read from a plain socket: its status line, its header lines
 * (lower-cased) and its body as text, gunzipped when the response says gzip (zlib checks that the
 * stream is whole: its length and CRC).
 */
export const parseRawResponse = (response: Buffer) => {
  const at = response.indexOf("\r\n\r\n")
  const [status, ...fields] = response.subarray(0, at).toString("latin1").split("\r\n")
  const headers = fields.map((line) => line.toLowerCase())
  const body = response.subarray(at + 4)
  const text = (headers.includes("content-encoding: gzip") ? gunzipSync(body) : body).toString("utf8")
  return { status: status!, headers, text }
}

export interface SseEvent {
  readonly id: string | undefined
  readonly event: string
  readonly data: string
}

export interface SseClient {
  readonly status: number
  readonly contentType: string | null
  /** `gzip` when the server compressed the stream (fetch, like a browser, asks for it and decodes it). */
  readonly contentEncoding: string | null
  /** Every event received so far, in order. */
  readonly events: Array<SseEvent>
  /** Comment lines (heartbeats) received so far. */
  readonly comments: () => number
  /** Resolves when the server ends the stream. */
  readonly ended: Promise<void>
  readonly close: () => void
}

/** Splits an event stream into events (and counts comments) as it arrives. */
const parse = (client: { events: Array<SseEvent>; comments: number }, block: string) => {
  let id: string | undefined
  let event = "message"
  const data: Array<string> = []
  for (const line of block.split("\n")) {
    if (line.startsWith(":")) client.comments++
    else if (line.startsWith("id: ")) id = line.slice(4)
    else if (line.startsWith("event: ")) event = line.slice(7)
    else if (line.startsWith("data: ")) data.push(line.slice(6))
  }
  if (data.length > 0) client.events.push({ id, event, data: data.join("\n") })
}

/** Connects to `url`; closed with the enclosing scope. */
export const openSse = (url: string, headers: Record<string, string> = {}) =>
  Effect.acquireRelease(
    Effect.promise(async (): Promise<SseClient> => {
      const controller = new AbortController()
      const response = await fetch(url, {
        headers: { accept: "text/event-stream", ...headers },
        signal: controller.signal
      })
      const state = { events: [] as Array<SseEvent>, comments: 0 }
      const ended = (async () => {
        if (response.body === null) return
        const decoder = new TextDecoder()
        let buffer = ""
        try {
          for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
            buffer += decoder.decode(chunk, { stream: true })
            let end: number
            while ((end = buffer.indexOf("\n\n")) !== -1) {
              parse(state, buffer.slice(0, end))
              buffer = buffer.slice(end + 2)
            }
          }
        } catch {
          // aborted by close()
        }
      })()
      return {
        status: response.status,
        contentType: response.headers.get("content-type"),
        contentEncoding: response.headers.get("content-encoding"),
        events: state.events,
        comments: () => state.comments,
        ended,
        close: () => controller.abort()
      }
    }),
    (client) => Effect.sync(() => client.close())
  )

/** The summaries of the `order` events received so far. */
export const ordersOf = (client: SseClient) =>
  client.events.filter((e) => e.event === "order").map((e) => JSON.parse(e.data) as { order_uid: string })

/** Waits (polling) until `check` holds, failing with `what` and the last state after `timeoutMs`. */
export const waitUntil = (what: string, check: () => boolean, timeoutMs = 20_000, describe?: () => string) =>
  Effect.gen(function* () {
    const deadline = Date.now() + timeoutMs
    while (!check()) {
      if (Date.now() > deadline) {
        return yield* Effect.dieMessage(`timed out waiting until ${what}${describe ? `: ${describe()}` : ""}`)
      }
      yield* Effect.sleep("50 millis")
    }
  })
