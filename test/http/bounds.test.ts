/**
 * What a client can hold of the server, and what it gets past each bound: a connection that sends
 * its headers a byte at a time is closed; a body larger than allowed is refused (413) before it is
 * read; a body of unknown length (411) or of the wrong type (415) likewise; connections past
 * `http.max_connections` are closed as they arrive. Each refusal is counted in
 * `http_shed_requests_total{reason}`.
 */
import { connect, type Socket } from "node:net"
import { expect, layer } from "@effect/vitest"
import { Effect } from "effect"
import { baseUrl, httpStack } from "../support/app.ts"
import { TestDatabase } from "../support/database.ts"
import { deltaOf, scrapeMetrics } from "../support/metrics.ts"

const MAX_CONNECTIONS = 20
const MAX_BODY = 1024

const stack = httpStack(TestDatabase, {
  http: {
    host: "127.0.0.1",
    port: 0,
    access_log: false,
    shutdown_timeout: "2 seconds",
    headers_timeout: "1 second",
    request_timeout: "3 seconds",
    max_connections: MAX_CONNECTIONS,
    max_body_bytes: MAX_BODY
  }
})

const portOf = Effect.map(baseUrl, (url) => Number(new URL(url).port))

/** A raw connection, what it has been sent so far, and when it closed (ms after opening). */
const open = (port: number) =>
  Effect.async<{ socket: Socket; received: () => string; closed: Promise<number> }>((resume) => {
    const socket = connect(port, "127.0.0.1")
    const opened = Date.now()
    let received = ""
    socket.on("data", (d) => (received += d.toString()))
    socket.on("error", () => undefined)
    const closed = new Promise<number>((resolve) => socket.once("close", () => resolve(Date.now() - opened)))
    socket.once("connect", () => resume(Effect.succeed({ socket, received: () => received, closed })))
  })

layer(stack, { excludeTestServices: true, timeout: "60 seconds" })("the server's own bounds", (it) => {
  it.effect("a connection that sends its headers a byte a second is closed at http.headers_timeout", () =>
    Effect.gen(function* () {
      const port = yield* portOf
      const client = yield* open(port)
      const request = "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + "a".repeat(60)
      let at = 0
      const trickle = setInterval(() => client.socket.write(request[at++ % request.length]!), 1000)
      const closedAfter = yield* Effect.promise(() => client.closed).pipe(
        Effect.ensuring(Effect.sync(() => clearInterval(trickle)))
      )
      // Node checks the timeout every second: closed within seconds, not after its default minute.
      expect(closedAfter).toBeLessThan(10_000)
      expect(client.received()).toMatch(/^HTTP\/1\.1 408/)
    })
  )

  it.effect("a body over http.max_body_bytes gets 413 without being read, and the connection is closed", () =>
    Effect.gen(function* () {
      const port = yield* portOf
      const before = (yield* scrapeMetrics).samples
      const client = yield* open(port)
      // Announces 50 MB, sends 100 bytes: the answer must come anyway, at once.
      client.socket.write(
        "POST /dead-letters/replay HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 50000000\r\n\r\n" +
          "{".repeat(100)
      )
      const closedAfter = yield* Effect.promise(() => client.closed)
      expect(closedAfter).toBeLessThan(2_000)
      expect(client.received()).toMatch(/^HTTP\/1\.1 413/)
      expect(client.received()).toContain('"error":"body_too_large"')
      const after = (yield* scrapeMetrics).samples
      expect(deltaOf(before, after)("http_shed_requests_total", { reason: "body_too_large" })).toBe(1)
    })
  )

  it.effect("a body of unknown length is 411, and one that is not JSON where JSON is expected is 415", () =>
    Effect.gen(function* () {
      const url = yield* baseUrl
      const chunked = yield* Effect.promise(() =>
        fetch(`${url}/dead-letters/replay`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: new ReadableStream({
            start(controller) {
              controller.enqueue(new TextEncoder().encode('{"dry_run":true}'))
              controller.close()
            }
          }),
          duplex: "half"
        } as RequestInit)
      )
      expect(chunked.status).toBe(411)
      const form = yield* Effect.promise(() =>
        fetch(`${url}/dead-letters/replay`, {
          method: "POST",
          headers: { "content-type": "application/x-www-form-urlencoded" },
          body: "dry_run=true"
        })
      )
      expect(form.status).toBe(415)
      expect(yield* Effect.promise(() => form.json())).toMatchObject({ error: "unsupported_media_type" })
      // The same request as JSON, within the bound, is taken (a dry run, on a service without Kafka).
      const ok = yield* Effect.promise(() =>
        fetch(`${url}/dead-letters/replay`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ dry_run: true })
        })
      )
      expect(ok.status).toBe(200)
    })
  )

  it.effect("connections past http.max_connections are closed as they arrive; the others are served", () =>
    Effect.gen(function* () {
      const port = yield* portOf
      const url = yield* baseUrl
      const before = (yield* scrapeMetrics).samples
      const held: Array<Effect.Effect.Success<ReturnType<typeof open>>> = []
      for (let i = 0; i < MAX_CONNECTIONS; i++) held.push(yield* open(port))
      const extra = yield* open(port)
      const closedAfter = yield* Effect.promise(() => extra.closed)
      expect(closedAfter).toBeLessThan(1_000)
      expect(extra.received()).toBe("")
      for (const c of held) c.socket.destroy()
      yield* Effect.promise(() => Promise.all(held.map((c) => c.closed)))
      // Room again: served as usual.
      expect((yield* Effect.promise(() => fetch(`${url}/healthz`))).status).toBe(200)
      const after = (yield* scrapeMetrics).samples
      expect(deltaOf(before, after)("http_shed_requests_total", { reason: "connections" })).toBe(1)
    })
  )
})
