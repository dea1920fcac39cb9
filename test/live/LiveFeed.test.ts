/**
 * `GET /orders/live` on a real PostgreSQL and HTTP server: what a browser connected to the feed
 * sees as orders are stored, when it reconnects, when it cannot keep up, and when the service stops.
 */
import { connect, type Socket } from "node:net"
import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { Context, Effect, Exit, Fiber, Layer, Schema, Scope } from "effect"
import { LiveFeed } from "../../src/live/LiveFeed.ts"
import { Order, type OrderJson } from "../../src/orders/Order.ts"
import { OrderRepository } from "../../src/orders/OrderRepository.ts"
import { generateOrders } from "../../src/tools/OrderGenerator.ts"
import { baseUrl, httpStack } from "../support/app.ts"
import { TestDatabase } from "../support/database.ts"
import { storedCount } from "../support/orders.ts"
import { openSse, ordersOf, parseRawResponse, waitUntil } from "../support/sse.ts"

const toOrder = Schema.decodeUnknownSync(Order)

const store = (orders: ReadonlyArray<OrderJson>) =>
  Effect.flatMap(OrderRepository, (repo) => repo.insertBatch(orders.map((o) => toOrder(o))))

const liveUrl = Effect.map(baseUrl, (url) => `${url}/orders/live`)

describe("the live feed on a real PostgreSQL", () => {
  it.live(
    "each newly stored order arrives once, as its summary with a database-wide id; an idle stream gets heartbeats",
    () =>
      Effect.gen(function* () {
        const client = yield* openSse(yield* liveUrl)
        expect(client.status).toBe(200)
        expect(client.contentType).toMatch(/^text\/event-stream/)
        // Asked for (as browsers do), the stream is gzip; a client that does not ask gets it plain.
        expect(client.contentEncoding).toBe("gzip")
        const plain = yield* openSse(yield* liveUrl, { "accept-encoding": "identity" })
        expect(plain.contentEncoding).toBe(null)
        const [first, ...rest] = generateOrders(5, 1)
        yield* store([first!])
        yield* store(rest)
        // A redelivery is not a new order: no event. An order stored after it marks the point by
        // which its event would have come (events follow the commits' order).
        yield* store([first!])
        const [marker] = generateOrders(1, 9)
        yield* store([marker!])
        yield* waitUntil("6 orders arrived", () => ordersOf(client).length >= 6)
        const received = client.events.filter((e) => e.event === "order").slice(0, -1)
        expect(received.map((e) => JSON.parse(e.data).order_uid)).toEqual(
          [first, ...rest].map((o) => o!.order_uid)
        )
        expect(JSON.parse(received[0]!.data)).toEqual({
          order_uid: first!.order_uid,
          date_created: first!.date_created,
          customer_id: first!.customer_id,
          amount: first!.payment.amount,
          currency: first!.payment.currency,
          item_count: first!.items.length
        })
        // Ids are the database's sequence numbers: increasing, distinct.
        const ids = received.map((e) => Number(e.id))
        expect(ids.every((id, i) => Number.isSafeInteger(id) && (i === 0 || id > ids[i - 1]!))).toBe(true)
        yield* waitUntil("two heartbeats", () => client.comments() >= 2 && plain.comments() >= 2, 5_000)
        yield* waitUntil("the plain client has the orders too", () => ordersOf(plain).length >= 6)
        expect(plain.events.filter((e) => e.event === "order").slice(0, -1)).toEqual(received)
      }).pipe(Effect.scoped, Effect.provide(httpStack(TestDatabase, { live: { heartbeat: "300 millis" } }))),
    60_000
  )

  it.live(
    "a client reconnecting with Last-Event-ID gets what it missed; one whose id is no longer kept is told of the gap",
    () =>
      Effect.gen(function* () {
        const url = yield* liveUrl
        const watcher = yield* openSse(url)
        const orders = generateOrders(6, 2)
        yield* store(orders)
        yield* waitUntil("6 orders arrived", () => ordersOf(watcher).length >= 6)
        const ids = watcher.events.filter((e) => e.event === "order").map((e) => e.id!)

        // Resuming after the 3rd of the last five kept: the 4th to the 6th, at once, in order.
        const resumed = yield* openSse(url, { "last-event-id": ids[2]! })
        yield* waitUntil("3 missed orders replayed", () => ordersOf(resumed).length >= 3)
        expect(ordersOf(resumed).map((o) => o.order_uid)).toEqual(orders.slice(3).map((o) => o.order_uid))
        expect(resumed.events[0]!.event).toBe("order")

        // The first event fell out of the window of five: the client learns it may have missed some.
        const tooOld = yield* openSse(url, { "last-event-id": ids[0]! })
        yield* waitUntil("a gap event", () => tooOld.events.length >= 1)
        expect(tooOld.events[0]!.event).toBe("gap")
        expect(ordersOf(tooOld)).toEqual([])

        // And the resumed client goes on with new orders as they come.
        const [next] = generateOrders(1, 3)
        yield* store([next!])
        yield* waitUntil("the next order on the resumed stream", () => ordersOf(resumed).length >= 4)
        expect(ordersOf(resumed)[3]!.order_uid).toBe(next!.order_uid)
      }).pipe(Effect.scoped, Effect.provide(httpStack(TestDatabase, { live: { resume_window: 5 } }))),
    60_000
  )

  for (const encoding of ["identity", "gzip"] as const) {
    it.live(
      `a client that stops reading is dropped with a final event saying so; other clients and storing go on (${encoding})`,
      () =>
        Effect.gen(function* () {
          const url = yield* liveUrl
          const live = yield* LiveFeed
          const fast = yield* openSse(url)
          const slow = yield* slowClient(url, encoding)
          yield* waitUntil("both clients connected", () => Effect.runSync(live.clients) === 2)
          // Store until the silent client, its socket buffers full, is let go.
          const stored: Array<string> = []
          let seed = 100
          while (Effect.runSync(live.clients) === 2) {
            if (stored.length >= 200_000) return yield* Effect.dieMessage("the slow client was never dropped")
            const batch = generateOrders(4_000, seed++)
            const outcomes = yield* store(batch)
            expect(outcomes.every((o) => o === "inserted")).toBe(true)
            stored.push(...batch.map((o) => o.order_uid))
          }
          yield* Effect.logInfo(`slow client dropped after ${stored.length} orders`)
          // The dropped client, reading again, finds its stream ended with the reason.
          const text = yield* Effect.promise(() => slow.readToEnd())
          const lastEvent = text.trimEnd().split("\n\n").at(-1)!
          expect(lastEvent).toMatch(/^event: dropped\ndata: \{"message":".*fell more than 2000 events behind/)
          const slowOrders = text.split("\n\n").filter((block) => block.includes("event: order")).length
          expect(slowOrders).toBeLessThan(stored.length)
          // Storing never waited for it, and the client that reads got every order, in order.
          const more = generateOrders(500, seed++)
          yield* store(more)
          stored.push(...more.map((o) => o.order_uid))
          expect(yield* storedCount).toBe(stored.length)
          yield* waitUntil(
            "every order reached the client that reads",
            () => ordersOf(fast).length >= stored.length,
            60_000,
            () => `${ordersOf(fast).length} of ${stored.length}`
          )
          expect(ordersOf(fast).map((o) => o.order_uid)).toEqual(stored)
          expect(fast.events.some((e) => e.event === "dropped")).toBe(false)
        }).pipe(
          Effect.scoped,
          // Only the bound in events can end this client: the one in bytes is out of reach.
          Effect.provide(
            httpStack(TestDatabase, { live: { client_buffer: 2000, client_buffer_bytes: 256 * 1024 * 1024 } })
          )
        ),
      300_000
    )
  }

  it.live(
    "a client that keeps up takes a burst larger than its buffer (one transaction's orders) without being dropped",
    () =>
      Effect.gen(function* () {
        const client = yield* openSse(yield* liveUrl)
        const burst = generateOrders(60, 41)
        yield* store(burst)
        yield* waitUntil("the burst arrived", () => ordersOf(client).length >= 60)
        const next = generateOrders(5, 42)
        yield* store(next)
        yield* waitUntil("the next orders arrived", () => ordersOf(client).length >= 65)
        expect(ordersOf(client).map((o) => o.order_uid)).toEqual([...burst, ...next].map((o) => o.order_uid))
        expect(client.events.some((e) => e.event === "dropped")).toBe(false)
      }).pipe(Effect.scoped, Effect.provide(httpStack(TestDatabase, { live: { client_buffer: 10 } }))),
    60_000
  )

  it.live(
    "when its listening connection is killed the feed listens again, tells clients of the gap and goes on",
    () =>
      Effect.gen(function* () {
        const client = yield* openSse(yield* liveUrl)
        const [before, after] = [generateOrders(1, 31), generateOrders(1, 32)]
        yield* store(before)
        yield* waitUntil("the first order arrived", () => ordersOf(client).length === 1)
        expect(client.events.some((e) => e.event === "gap")).toBe(false)
        const sql = yield* SqlClient.SqlClient
        const killed = yield* sql<{ pid: number }>`
          SELECT pid FROM pg_stat_activity
          WHERE datname = current_database() AND query LIKE 'LISTEN %' AND pid <> pg_backend_pid()`
        expect(killed.length).toBeGreaterThan(0)
        yield* sql`SELECT pg_terminate_backend(pid) FROM pg_stat_activity
          WHERE datname = current_database() AND query LIKE 'LISTEN %' AND pid <> pg_backend_pid()`
        // Within the watchdog's silence limit (20 s), the client hears of the gap.
        yield* waitUntil("a gap event", () => client.events.some((e) => e.event === "gap"), 40_000)
        yield* store(after)
        yield* waitUntil("the order stored after the recovery arrived", () => ordersOf(client).length === 2)
        expect(ordersOf(client).map((o) => o.order_uid)).toEqual([before[0]!.order_uid, after[0]!.order_uid])
      }).pipe(Effect.scoped, Effect.provide(httpStack(TestDatabase))),
    90_000
  )

  it.live(
    "plain and gzip: the same events under the feed's headers, and a gzip stream that is whole when the server stops",
    () =>
      Effect.gen(function* () {
        const scope = yield* Scope.make()
        const context = yield* Layer.buildWithScope(httpStack(TestDatabase), scope)
        const url = yield* liveUrl.pipe(Effect.provide(context))
        const live = Context.get(context, LiveFeed)
        const raw = (["identity", "gzip"] as const).map((encoding) =>
          Effect.runFork(rawResponse(url, { accept: "text/event-stream", "accept-encoding": encoding }))
        )
        const watcher = yield* openSse(url)
        yield* waitUntil("every client connected", () => Effect.runSync(live.clients) === 3)
        const orders = generateOrders(3, 51)
        yield* store(orders).pipe(Effect.provide(context))
        // Every client is written the same bytes in the same step: once one has them, all have.
        yield* waitUntil("the orders were sent", () => ordersOf(watcher).length >= 3)
        yield* Scope.close(scope, Exit.void)

        // A gzip body is decoded by zlib, which checks the stream's CRC and length: it must be whole.
        const [plain, gzip] = yield* Effect.forEach(raw, (client) => Fiber.join(client))
        expect(plain!.head[0]).toBe("HTTP/1.1 200 OK")
        expect(plain!.head).toEqual(
          expect.arrayContaining([
            "content-type: text/event-stream",
            "cache-control: no-store",
            "x-accel-buffering: no",
            "vary: accept-encoding",
            "x-content-type-options: nosniff"
          ])
        )
        expect(plain!.head.some((h) => h.startsWith("content-encoding"))).toBe(false)
        expect(gzip!.head).toEqual([...plain!.head, "content-encoding: gzip"].sort())
        for (const uid of orders.map((o) => o.order_uid)) expect(plain!.text).toContain(uid)
        expect(gzip!.text).toBe(plain!.text)
      }).pipe(Effect.scoped),
    60_000
  )

  it.live(
    "shutting down ends live streams at once rather than waiting out the drain timeout",
    () =>
      Effect.gen(function* () {
        const scope = yield* Scope.make()
        const context = yield* Layer.buildWithScope(
          httpStack(TestDatabase, {
            http: { host: "127.0.0.1", port: 0, access_log: false, shutdown_timeout: "30 seconds" }
          }),
          scope
        )
        const url = yield* liveUrl.pipe(Effect.provide(context))
        const clients = yield* Effect.all([openSse(url), openSse(url)])
        yield* waitUntil(
          "both connected",
          () => Effect.runSync(Effect.provide(LiveFeed.pipe(Effect.flatMap((l) => l.clients)), context)) === 2
        )
        const started = Date.now()
        yield* Scope.close(scope, Exit.void)
        const took = Date.now() - started
        yield* Effect.promise(() => Promise.all(clients.map((c) => c.ended)))
        // Well inside the 30 s a request still running would be given.
        expect(took).toBeLessThan(10_000)
      }).pipe(Effect.scoped),
    60_000
  )
})

/** A whole response read from a plain socket (HTTP/1.0: the body runs to the connection's end). */
const rawResponse = (url: string, headers: Record<string, string>) =>
  Effect.promise(
    () =>
      new Promise<{ readonly head: Array<string>; readonly text: string }>((resolve, reject) => {
        const { hostname, port, pathname } = new URL(url)
        const socket = connect({ host: hostname, port: Number(port) }, () => {
          const lines = Object.entries(headers).map(([name, value]) => `${name}: ${value}\r\n`)
          socket.write(`GET ${pathname} HTTP/1.0\r\nHost: ${hostname}\r\n${lines.join("")}\r\n`)
        })
        const chunks: Array<Buffer> = []
        socket.on("data", (chunk: Buffer) => chunks.push(chunk))
        socket.on("close", () => {
          try {
            const { status, headers, text } = parseRawResponse(Buffer.concat(chunks))
            // The status, then every header but `date`, sorted.
            resolve({ head: [status, ...headers.filter((line) => !line.startsWith("date:")).sort()], text })
          } catch (error) {
            // A gzip stream cut short: zlib refuses it.
            reject(error)
          }
        })
        socket.once("error", reject)
      })
  )

interface SlowClient {
  /**
   * Starts reading again and resolves with the body received once the server ends the stream,
   * decoded (a gzip body must be whole: zlib checks its length and CRC).
   */
  readonly readToEnd: () => Promise<string>
}

/** A client that sends the request and then reads nothing, as a stalled browser tab would. */
const slowClient = (url: string, encoding: "gzip" | "identity") =>
  Effect.acquireRelease(
    Effect.promise(
      () =>
        new Promise<{ socket: Socket; client: SlowClient }>((resolve, reject) => {
          const { hostname, port, pathname } = new URL(url)
          const socket = connect({ host: hostname, port: Number(port) }, () => {
            socket.write(
              `GET ${pathname} HTTP/1.0\r\nHost: ${hostname}\r\nAccept: text/event-stream\r\n` +
                `Accept-Encoding: ${encoding}\r\n\r\n`
            )
            socket.pause()
            const chunks: Array<Buffer> = []
            const ended = new Promise<string>((done) => {
              socket.on("data", (chunk: Buffer) => chunks.push(chunk))
              socket.on("close", () => {
                const { headers, text } = parseRawResponse(Buffer.concat(chunks))
                expect(headers.includes("content-encoding: gzip")).toBe(encoding === "gzip")
                done(text)
              })
            })
            resolve({
              socket,
              client: {
                readToEnd: () => {
                  socket.resume()
                  return ended
                }
              }
            })
          })
          socket.once("error", reject)
        })
    ),
    ({ socket }) => Effect.sync(() => socket.destroy())
  ).pipe(Effect.map(({ client }) => client))
