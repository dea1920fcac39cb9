/**
 * What the live feed lets a client hold of the process: a place among `live.max_clients` (and
 * `live.max_clients_per_address`), past which a new client is answered 503; a connection that
 * takes nothing is let go after `live.drain_timeout`, heartbeats or not; a reconnecting client whose
 * missed events would exceed `live.client_buffer_bytes` is told of a gap instead of being sent them.
 */
import { connect, type Socket } from "node:net"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Schema } from "effect"
import { LiveFeed } from "../../src/live/LiveFeed.ts"
import { Order, type OrderJson } from "../../src/orders/Order.ts"
import { OrderRepository } from "../../src/orders/OrderRepository.ts"
import { generateOrders } from "../../src/tools/OrderGenerator.ts"
import { baseUrl, httpStack } from "../support/app.ts"
import { TestDatabase } from "../support/database.ts"
import { deltaOf, metricValue, scrapeMetrics } from "../support/metrics.ts"
import { openSse, ordersOf, waitUntil } from "../support/sse.ts"

const toOrder = Schema.decodeUnknownSync(Order)

const store = (orders: ReadonlyArray<OrderJson>) =>
  Effect.flatMap(OrderRepository, (repo) => repo.insertBatch(orders.map((o) => toOrder(o))))

const liveUrl = Effect.map(baseUrl, (url) => `${url}/orders/live`)

interface RawClient {
  readonly socket: Socket
  /** The status line and headers, once they have arrived. */
  readonly head: Promise<string>
}

/**
 * `GET /orders/live` on a plain socket, from `localAddress` (any of 127.0.0.0/8 on Linux), that
 * reads nothing once `paused`, as a stalled tab would; closed with the enclosing scope.
 */
const rawLive = (
  url: string,
  options: {
    readonly localAddress?: string
    readonly headers?: Record<string, string>
    readonly paused?: boolean
  } = {}
) =>
  Effect.acquireRelease(
    Effect.promise(
      () =>
        new Promise<RawClient>((resolve, reject) => {
          const { hostname, port, pathname } = new URL(url)
          const socket = connect(
            { host: hostname, port: Number(port), localAddress: options.localAddress },
            () => {
              const lines = Object.entries(options.headers ?? {}).map(
                ([name, value]) => `${name}: ${value}\r\n`
              )
              socket.write(
                `GET ${pathname} HTTP/1.0\r\nHost: ${hostname}\r\nAccept: text/event-stream\r\n` +
                  `Accept-Encoding: identity\r\n${lines.join("")}\r\n`
              )
              let received = Buffer.alloc(0)
              const head = new Promise<string>((done) => {
                const onData = (chunk: Buffer) => {
                  received = Buffer.concat([received, chunk])
                  const at = received.indexOf("\r\n\r\n")
                  if (at === -1) return
                  socket.off("data", onData)
                  if (options.paused) socket.pause()
                  done(received.subarray(0, at).toString("latin1"))
                }
                socket.on("data", onData)
              })
              socket.on("error", () => undefined)
              resolve({ socket, head })
            }
          )
          socket.once("error", reject)
        })
    ),
    ({ socket }) => Effect.sync(() => socket.destroy())
  )

const statusOf = (head: string) => Number(head.split(" ")[1])

for (const fastPaths of [true, false]) {
  const way = fastPaths ? "the fast path" : "the router"
  describe(`live-feed client limits (${way})`, () => {
    it.live(
      "the client past live.max_clients is answered 503 with Retry-After, counted; a place that frees is taken again",
      () =>
        Effect.gen(function* () {
          const url = yield* liveUrl
          const live = yield* LiveFeed
          const before = yield* scrapeMetrics
          const first = yield* openSse(url)
          yield* openSse(url)
          expect(first.status).toBe(200)
          yield* waitUntil("two clients connected", () => Effect.runSync(live.clients) === 2)
          const during = yield* scrapeMetrics
          expect(deltaOf(before.samples, during.samples)("live_clients")).toBe(2)

          const refused = yield* Effect.promise(() =>
            fetch(url, { headers: { accept: "text/event-stream" } })
          )
          expect(refused.status).toBe(503)
          expect(refused.headers.get("retry-after")).toBe("5")
          expect(refused.headers.get("content-type")).toMatch(/^application\/json/)
          const body = yield* Effect.promise(() => refused.json())
          expect(body).toMatchObject({ error: "overloaded", limit: "live.max_clients" })
          expect(body.message).toContain("live.max_clients")
          const after = yield* scrapeMetrics
          const delta = deltaOf(before.samples, after.samples)
          expect(delta("http_shed_requests_total", { reason: "live_clients" })).toBe(1)
          expect(delta("http_shed_requests_total", { reason: "live_clients_per_address" })).toBe(0)

          // The limit counts connections, not attempts: once one closes, the next is let in.
          first.close()
          yield* waitUntil("the first client gone", () => Effect.runSync(live.clients) === 1)
          const again = yield* openSse(url)
          expect(again.status).toBe(200)
        }).pipe(
          Effect.scoped,
          Effect.provide(
            httpStack(TestDatabase, {
              http: {
                host: "127.0.0.1",
                port: 0,
                access_log: false,
                shutdown_timeout: "2 seconds",
                fast_paths: fastPaths
              },
              live: { max_clients: 2, max_clients_per_address: 100 }
            })
          )
        ),
      60_000
    )

    it.live(
      "the client past live.max_clients_per_address from one address is answered 503, counted; another address is let in",
      () =>
        Effect.gen(function* () {
          const url = yield* liveUrl
          const before = yield* scrapeMetrics
          for (let i = 0; i < 2; i++) {
            const client = yield* rawLive(url, { localAddress: "127.0.0.1" })
            expect(statusOf(yield* Effect.promise(() => client.head))).toBe(200)
          }
          const refused = yield* rawLive(url, { localAddress: "127.0.0.1" })
          const head = yield* Effect.promise(() => refused.head)
          expect(statusOf(head)).toBe(503)
          expect(head.toLowerCase()).toContain("retry-after: 5")
          // Another address has its own two places.
          const other = yield* rawLive(url, { localAddress: "127.0.0.2" })
          expect(statusOf(yield* Effect.promise(() => other.head))).toBe(200)
          const after = yield* scrapeMetrics
          const delta = deltaOf(before.samples, after.samples)
          expect(delta("http_shed_requests_total", { reason: "live_clients_per_address" })).toBe(1)
          expect(delta("http_shed_requests_total", { reason: "live_clients" })).toBe(0)
          expect(delta("live_clients")).toBe(3)
        }).pipe(
          Effect.scoped,
          Effect.provide(
            httpStack(TestDatabase, {
              http: {
                host: "127.0.0.1",
                port: 0,
                access_log: false,
                shutdown_timeout: "2 seconds",
                fast_paths: fastPaths
              },
              live: { max_clients: 100, max_clients_per_address: 2 }
            })
          )
        ),
      60_000
    )
  })
}

describe("a live-feed client's buffer", () => {
  it.live(
    "a client that reads nothing is let go after live.drain_timeout, with only heartbeats coming, and the gauge goes back down",
    () =>
      Effect.gen(function* () {
        const url = yield* liveUrl
        const live = yield* LiveFeed
        // Enough events that a resume from the first fills the connection's buffers in the kernel
        // (on loopback they take a megabyte or two): the rest waits in the process.
        const watcher = yield* openSse(url)
        const total = 24_000
        for (let seed = 0; seed < total / 4_000; seed++) yield* store(generateOrders(4_000, 600 + seed))
        yield* waitUntil("the watcher saw every order", () => ordersOf(watcher).length >= total, 60_000)
        const firstId = watcher.events.find((e) => e.event === "order")!.id!
        watcher.close()
        yield* waitUntil("the watcher gone", () => Effect.runSync(live.clients) === 0)

        const before = yield* scrapeMetrics
        // From here nothing is stored: all the feed sends on is heartbeats.
        const stalled = yield* rawLive(url, { headers: { "last-event-id": firstId }, paused: true })
        const connectedAt = Date.now()
        expect(statusOf(yield* Effect.promise(() => stalled.head))).toBe(200)
        yield* waitUntil("the client connected", () => Effect.runSync(live.clients) === 1)
        const during = yield* scrapeMetrics
        expect(deltaOf(before.samples, during.samples)("live_clients")).toBe(1)

        yield* waitUntil("the stalled client let go", () => Effect.runSync(live.clients) === 0, 20_000)
        const after = Date.now() - connectedAt
        yield* Effect.logInfo(`stalled client let go after ${after} ms`)
        // Not before its drain timeout (1 s), and not much after it.
        expect(after).toBeGreaterThanOrEqual(900)
        expect(after).toBeLessThan(5_000)
        // Its connection is closed once it has had its grace (5 s) to read the `dropped` event. (The
        // client, reading nothing, does not see the close: the server's side is what is measured.)
        const deadline = Date.now() + 15_000
        for (;;) {
          const now = yield* scrapeMetrics
          if (metricValue(now.samples, "live_clients") === metricValue(before.samples, "live_clients")) break
          if (Date.now() > deadline) return yield* Effect.dieMessage("live_clients never went back down")
          yield* Effect.sleep("200 millis")
        }
      }).pipe(
        Effect.scoped,
        Effect.provide(
          httpStack(TestDatabase, {
            live: {
              heartbeat: "100 millis",
              drain_timeout: "1 second",
              resume_window: 30_000,
              // Neither buffer bound can end this client: only its connection taking nothing.
              client_buffer: 1_000_000,
              client_buffer_bytes: 256 * 1024 * 1024
            }
          })
        )
      ),
    180_000
  )

  it.live(
    "a resume whose missed events exceed live.client_buffer_bytes is sent a gap, not the backlog; a smaller one is sent its events",
    () =>
      Effect.gen(function* () {
        const url = yield* liveUrl
        const watcher = yield* openSse(url)
        const orders = generateOrders(100, 700)
        yield* store(orders)
        yield* waitUntil("100 orders arrived", () => ordersOf(watcher).length >= 100)
        const ids = watcher.events.filter((e) => e.event === "order").map((e) => e.id!)

        // 99 events (about 20 kB) follow the first: more than the 4 kB a client may hold.
        const tooMuch = yield* openSse(url, { "last-event-id": ids[0]!, "accept-encoding": "identity" })
        yield* waitUntil("a gap event", () => tooMuch.events.length >= 1)
        yield* Effect.sleep("300 millis")
        expect(tooMuch.events[0]!.event).toBe("gap")
        expect(JSON.parse(tooMuch.events[0]!.data)).toMatchObject({ last_event_id: ids[0] })
        expect(ordersOf(tooMuch)).toEqual([])

        // Four events fit: they are sent, as before (the window, 1,000, holds all 100).
        const fits = yield* openSse(url, { "last-event-id": ids[95]! })
        yield* waitUntil("4 missed orders replayed", () => ordersOf(fits).length >= 4)
        expect(fits.events[0]!.event).toBe("order")
        expect(ordersOf(fits).map((o) => o.order_uid)).toEqual(orders.slice(96).map((o) => o.order_uid))
      }).pipe(
        Effect.scoped,
        Effect.provide(httpStack(TestDatabase, { live: { resume_window: 1_000, client_buffer_bytes: 4096 } }))
      ),
    60_000
  )
})
