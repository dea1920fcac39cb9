/**
 * `GET /order/{uid}`, `GET /orders/search` and `GET /orders/live` each have two ways in: the
 * server's fast path below the router (the default) and the HttpApi handler
 * (`http.fast_paths: false`). Both must give the same answer, byte for byte, so that a change to
 * the response cannot reach one and miss the other.
 */
import { describe, expect, it } from "@effect/vitest"
import { connect } from "node:net"
import { Context, Effect, Exit, Fiber, Layer, Redacted, Schema, Scope } from "effect"
import { ClientReads } from "../../src/db/ClientReads.ts"
import * as Database from "../../src/db/Database.ts"
import { HttpAddress } from "../../src/http/HttpServer.ts"
import { LiveFeed } from "../../src/live/LiveFeed.ts"
import { Order, type OrderJson } from "../../src/orders/Order.ts"
import { OrderRepository } from "../../src/orders/OrderRepository.ts"
import { httpStack } from "../support/app.ts"
import { createTestDatabase } from "../support/database.ts"
import { readFixtureJson } from "../support/fixtures.ts"
import { parseRawResponse, waitUntil } from "../support/sse.ts"
import { generateOrders } from "../../src/tools/OrderGenerator.ts"

const model = readFixtureJson("valid/model.json") as OrderJson
const unicode = readFixtureJson("valid/multi-item-unicode.json") as OrderJson

interface Seen {
  readonly status: number
  readonly headers: Record<string, string>
  readonly body: string
}

/** Status, every header but `date` (which tells the second), and the body's bytes (as hex). */
const request = (base: string, path: string, headers: Record<string, string>) =>
  Effect.promise(async (): Promise<Seen> => {
    const response = await fetch(`${base}${path}`, { headers })
    const seen: Record<string, string> = {}
    response.headers.forEach((value, name) => {
      if (name !== "date") seen[name] = value
    })
    const body = Buffer.from(await response.arrayBuffer()).toString("hex")
    return { status: response.status, headers: seen, body }
  })

const http = (fastPaths: boolean) => ({
  http: {
    host: "127.0.0.1",
    port: 0,
    access_log: false,
    shutdown_timeout: "5 seconds",
    fast_paths: fastPaths
  },
  cache: { max_entries: 1000, warm_count: 0 }
})

/** Two servers on one database holding both fixtures: the fast paths on, and off; their URLs. */
const bothWays = Effect.gen(function* () {
  const url = yield* createTestDatabase
  const database = Database.layer({ url: Redacted.make(url), maxConnections: 4 })
  const fast = yield* Layer.build(httpStack(database, http(true)))
  const routed = yield* Layer.build(httpStack(database, http(false)))
  yield* Effect.flatMap(OrderRepository, (repository) =>
    repository.insertBatch([model, unicode].map((o) => Schema.decodeUnknownSync(Order)(o)))
  ).pipe(Effect.provide(fast))
  return [Context.get(fast, HttpAddress).url, Context.get(routed, HttpAddress).url] as const
})

describe("GET /order/{uid} through the fast path and through the API handler", () => {
  it.live("hit, miss, 304, 400 and 404 get the same status, headers and bytes from both", () =>
    Effect.gen(function* () {
      const bases = yield* bothWays

      const path = `/order/${model.order_uid}`
      const first = yield* request(bases[0]!, path, {})
      const etag = first.headers["etag"]!
      expect(first.status).toBe(200)
      const cases: ReadonlyArray<readonly [string, string, Record<string, string>]> = [
        ["miss, from the database", `/order/${encodeURIComponent(unicode.order_uid)}`, {}],
        ["hit, from the cache", `/order/${encodeURIComponent(unicode.order_uid)}`, {}],
        ["hit", path, {}],
        ["304 on the ETag", path, { "if-none-match": etag }],
        ["200 on another ETag", path, { "if-none-match": '"something-else"' }],
        ["400: a control character", "/order/a%01b", {}],
        ["400: a tab", "/order/tab%09", {}],
        ["404", "/order/no-such-order", {}],
        ["404 again", "/order/no-such-order", {}]
      ]
      // The routed server has not seen `path` yet: its first answer comes from the database.
      expect(yield* request(bases[1]!, path, {}), "first read").toStrictEqual(first)
      for (const [name, target, headers] of cases) {
        const [viaFastPath, viaHandler] = yield* Effect.all(
          bases.map((base) => request(base, target, headers))
        )
        expect(viaHandler, name).toStrictEqual(viaFastPath)
      }
      // And the answers are the contract's, not merely alike.
      const statuses = yield* Effect.forEach(cases, ([, target, headers]) =>
        request(bases[1]!, target, headers)
      )
      expect(statuses.map((s) => s.status)).toEqual([200, 200, 200, 304, 200, 400, 400, 404, 404])
      expect(statuses[2]!.headers).toMatchObject({
        "content-type": "application/json",
        "cache-control": "no-store",
        "x-content-type-options": "nosniff",
        etag
      })
    }).pipe(Effect.scoped)
  )
})

describe("GET /orders/search through the fast path and through the API handler", () => {
  it.live("results, pages, every kind of 400 and a parameter given twice: the same from both", () =>
    Effect.gen(function* () {
      const bases = yield* bothWays
      const ever = "from=2000-01-01T00:00:00Z&to=2100-01-01T00:00:00Z"

      const firstPage = yield* request(bases[0]!, `/orders/search?${ever}&limit=1`, {})
      const cursor = JSON.parse(Buffer.from(firstPage.body, "hex").toString()).next_cursor as string
      expect(cursor).toEqual(expect.any(String))
      const cases: ReadonlyArray<readonly [string, string, number]> = [
        ["a track number, padded", `q=%20${model.track_number}%20`, 200],
        ["a phone as typed, with + written as %2B", "q=%2B972%20(000)%2000-00", 200],
        ["an e-mail in capitals, + in the query as a space", "q=TEST@Gmail.com+", 200],
        ["a unicode rid", `q=${encodeURIComponent(unicode.items[1]!.rid)}`, 200],
        ["nothing found", "q=no-such-thing", 200],
        ["a date range, first page", `${ever}&limit=1`, 200],
        ["a date range, next page", `${ever}&limit=1&cursor=${encodeURIComponent(cursor)}`, 200],
        ["parameters it does not read", `q=${model.order_uid}&page=2&sort=asc`, 200],
        ["no parameter", "", 400],
        ["blank q", "q=%20%20", 400],
        ["a control character", "q=a%01b", 400],
        ["q too long", `q=${"x".repeat(257)}`, 400],
        ["limit out of range", "q=x&limit=101", 400],
        ["limit not a number", "q=x&limit=ten", 400],
        ["from not a timestamp", "from=yesterday", 400],
        ["from after to", "from=2022-01-01T00:00:00Z&to=2021-01-01T00:00:00Z", 400],
        ["a cursor it never gave", "q=x&cursor=bogus", 400],
        ["q given twice", "q=a&q=b", 400],
        ["malformed percent-encoding", "q=%E0%A4%A", 200]
      ]
      for (const [name, query, status] of cases) {
        const [viaFastPath, viaHandler] = yield* Effect.all(
          bases.map((base) => request(base, `/orders/search?${query}`, {}))
        )
        expect(viaFastPath.status, name).toBe(status)
        expect(viaHandler, name).toStrictEqual(viaFastPath)
      }
      const byTrack = yield* request(bases[0]!, `/orders/search?q=${model.track_number}`, {})
      expect(byTrack.headers).toMatchObject({
        "content-type": "application/json",
        "x-content-type-options": "nosniff"
      })
      expect(JSON.parse(Buffer.from(byTrack.body, "hex").toString()).items).toMatchObject([
        { order_uid: model.order_uid }
      ])
    }).pipe(Effect.scoped)
  )
})

describe("a search on the fast path whose client leaves", () => {
  it.live("while it waits for a connection: it never runs (logged 499), and the next search does", () =>
    Effect.gen(function* () {
      const url = yield* createTestDatabase
      const database = Database.layer({ url: Redacted.make(url), maxConnections: 4 })
      // pool_max 3: reads for clients get one connection, held here, so searches wait in line.
      const stack = yield* Layer.build(httpStack(database, { ...http(true), database: { pool_max: 3 } }))
      yield* Effect.flatMap(OrderRepository, (repository) =>
        repository.insertBatch([Schema.decodeUnknownSync(Order)(model)])
      ).pipe(Effect.provide(stack))
      const base = Context.get(stack, HttpAddress).url
      const reads = Context.get(stack, ClientReads)
      let held = false
      reads.unsafeAcquire(() => (held = true))
      expect(held).toBe(true)

      const leaving = new AbortController()
      const gone = fetch(`${base}/orders/search?q=${model.track_number}`, { signal: leaving.signal }).then(
        (response) => response.status,
        () => "aborted"
      )
      yield* Effect.sleep("200 millis")
      leaving.abort()
      expect(yield* Effect.promise(() => gone)).toBe("aborted")
      yield* Effect.sleep("100 millis")
      const next = fetch(`${base}/orders/search?q=${model.track_number}`)
      yield* Effect.sleep("100 millis")
      reads.release()
      const answered = yield* Effect.promise(() => next)
      expect(answered.status).toBe(200)
      expect(((yield* Effect.promise(() => answered.json())) as any).items).toHaveLength(1)

      const metrics = yield* Effect.promise(() => fetch(`${base}/metrics`).then((r) => r.text()))
      expect(metrics).toMatch(
        /http_request_duration_seconds_count\{method="GET",route="\/orders\/search",status="499"\} 1\n/
      )
    }).pipe(Effect.scoped)
  )
})

/** A whole response read from a plain socket (HTTP/1.0: the body runs to the connection's end). */
const rawResponse = (base: string, path: string, headers: Record<string, string>) =>
  Effect.promise(
    () =>
      new Promise<{ readonly head: Array<string>; readonly text: string }>((resolve, reject) => {
        const { hostname, port } = new URL(base)
        const socket = connect({ host: hostname, port: Number(port) }, () => {
          const lines = Object.entries(headers).map(([name, value]) => `${name}: ${value}\r\n`)
          socket.write(`GET ${path} HTTP/1.0\r\nHost: ${hostname}\r\n${lines.join("")}\r\n`)
        })
        const chunks: Array<Buffer> = []
        socket.on("data", (chunk: Buffer) => chunks.push(chunk))
        socket.on("close", () => {
          const { status, headers, text } = parseRawResponse(Buffer.concat(chunks))
          // Every header but `date`, sorted: the two ways may write them in any order.
          resolve({ head: [status, ...headers.filter((line) => !line.startsWith("date:")).sort()], text })
        })
        socket.once("error", reject)
      })
  )

describe("GET /orders/live through the fast path and through the API handler", () => {
  it.live(
    "plain and gzip: the same status, headers and events from both, and a whole gzip stream when the server stops",
    () =>
      Effect.gen(function* () {
        const url = yield* createTestDatabase
        const database = Database.layer({ url: Redacted.make(url), maxConnections: 4 })
        const servers = yield* Effect.forEach([true, false], (fastPaths) =>
          Effect.gen(function* () {
            const scope = yield* Scope.make()
            const context = yield* Layer.buildWithScope(httpStack(database, http(fastPaths)), scope)
            return { scope, context, base: Context.get(context, HttpAddress).url }
          })
        )
        const clients = servers.flatMap(({ base }) =>
          (["identity", "gzip"] as const).map((encoding) =>
            Effect.runFork(
              rawResponse(base, "/orders/live", { accept: "text/event-stream", "accept-encoding": encoding })
            )
          )
        )
        const connected = (context: Context.Context<LiveFeed>) =>
          Effect.runSync(Context.get(context, LiveFeed).clients)
        yield* waitUntil("every client connected", () =>
          servers.every(({ context }) => connected(context) === 2)
        )

        const orders = generateOrders(3, 51)
        yield* Effect.flatMap(OrderRepository, (repository) =>
          repository.insertBatch(orders.map((o) => Schema.decodeUnknownSync(Order)(o)))
        ).pipe(Effect.provide(servers[0]!.context))
        // Both feeds have sent the orders (they flush every tenth of a second); then both stop.
        yield* Effect.sleep("1 second")
        yield* Effect.forEach(servers, ({ scope }) => Scope.close(scope, Exit.void))

        // A gzip body is decoded by zlib, which checks the stream's CRC and length: it must be whole.
        const seen = yield* Effect.forEach(clients, (client) => Fiber.join(client))
        const [fastPlain, fastGzip, routedPlain, routedGzip] = seen
        expect(fastPlain!.head).toContain("content-type: text/event-stream")
        expect(fastPlain!.head.some((h) => h.startsWith("content-encoding"))).toBe(false)
        expect(fastGzip!.head).toContain("content-encoding: gzip")
        expect(routedPlain!.head).toEqual(fastPlain!.head)
        expect(routedGzip!.head).toEqual(fastGzip!.head)
        for (const uid of orders.map((o) => o.order_uid)) expect(fastPlain!.text).toContain(uid)
        expect(fastGzip!.text).toBe(fastPlain!.text)
        expect(routedPlain!.text).toBe(fastPlain!.text)
        expect(routedGzip!.text).toBe(fastPlain!.text)
      }).pipe(Effect.scoped),
    60_000
  )
})
