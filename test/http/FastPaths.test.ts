/**
 * `GET /order/{uid}` and `GET /orders/search` have two ways in: the server's fast path below the
 * router (the default) and the HttpApi handler (`http.fast_paths: false`). Both must give the same
 * answer, byte for byte, so that a change to the response cannot reach one and miss the other. (Left different: a path
 * the router matches to no route at all, an empty id or escapes that are not UTF-8, is 400 on the
 * fast path and the router's 404.)
 */
import { describe, expect, it } from "@effect/vitest"
import { Context, Effect, Layer, Redacted, Schema } from "effect"
import * as Database from "../../src/db/Database.ts"
import { HttpAddress } from "../../src/http/HttpServer.ts"
import { Order, ORDER_UID_MAX_LENGTH, type OrderJson } from "../../src/orders/Order.ts"
import { OrderRepository } from "../../src/orders/OrderRepository.ts"
import { httpStack } from "../support/app.ts"
import { createTestDatabase } from "../support/database.ts"
import { readFixtureJson } from "../support/fixtures.ts"

const model = readFixtureJson("valid/model.json") as OrderJson
const unicode = readFixtureJson("valid/multi-item-unicode.json") as OrderJson
/** An order whose id is as long as an id may be: longer than the router matches by default (100). */
const longest: OrderJson = {
  ...model,
  order_uid: "L".repeat(ORDER_UID_MAX_LENGTH),
  payment: { ...model.payment, transaction: "longest" }
}

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

/** Two servers on one database holding the fixtures: the fast path on, and off; their URLs. */
const bothWays = Effect.gen(function* () {
  const url = yield* createTestDatabase
  const database = Database.layer({ url: Redacted.make(url), maxConnections: 4 })
  const fast = yield* Layer.build(httpStack(database, http(true)))
  const routed = yield* Layer.build(httpStack(database, http(false)))
  yield* Effect.flatMap(OrderRepository, (repository) =>
    repository.insertBatch([model, unicode, longest].map((o) => Schema.decodeUnknownSync(Order)(o)))
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
      const cases: ReadonlyArray<readonly [string, string, Record<string, string>, number]> = [
        ["miss, from the database", `/order/${encodeURIComponent(unicode.order_uid)}`, {}, 200],
        ["hit, from the cache", `/order/${encodeURIComponent(unicode.order_uid)}`, {}, 200],
        ["hit", path, {}, 200],
        ["304 on the ETag", path, { "if-none-match": etag }, 304],
        ["200 on another ETag", path, { "if-none-match": '"something-else"' }, 200],
        // Longer than the platform's router matches by default: found all the same.
        [
          `an id of ${ORDER_UID_MAX_LENGTH} characters, from the database`,
          `/order/${longest.order_uid}`,
          {},
          200
        ],
        [`an id of ${ORDER_UID_MAX_LENGTH} characters, cached`, `/order/${longest.order_uid}`, {}, 200],
        ["404 for an id of 101 characters", `/order/${"x".repeat(101)}`, {}, 404],
        [
          `400 past ${ORDER_UID_MAX_LENGTH} characters`,
          `/order/${"x".repeat(ORDER_UID_MAX_LENGTH + 1)}`,
          {},
          400
        ],
        ["400: a control character", "/order/a%01b", {}, 400],
        ["400: a tab", "/order/tab%09", {}, 400],
        // The router cuts a path at `;` (and would look for `a`): the id is the whole segment.
        ["404 for an id with a semicolon", "/order/a;b", {}, 404],
        ["404", "/order/no-such-order", {}, 404],
        ["404 again", "/order/no-such-order", {}, 404]
      ]
      // The routed server has not seen `path` yet: its first answer comes from the database.
      expect(yield* request(bases[1]!, path, {}), "first read").toStrictEqual(first)
      for (const [name, target, headers, status] of cases) {
        const [viaFastPath, viaHandler] = yield* Effect.all(
          bases.map((base) => request(base, target, headers))
        )
        // The answers are the contract's, not merely alike.
        expect(viaHandler.status, name).toBe(status)
        expect(viaHandler, name).toStrictEqual(viaFastPath)
      }
      const hit = yield* request(bases[1]!, path, {})
      expect(hit.headers).toMatchObject({
        "content-type": "application/json",
        "cache-control": "no-store",
        "x-content-type-options": "nosniff",
        etag
      })
    }).pipe(Effect.scoped)
  )
})

describe("GET /orders/search through the fast path and through the API handler", () => {
  it.live("pages, cursors, nothing found and every refusal get the same status, headers and bytes", () =>
    Effect.gen(function* () {
      const bases = yield* bothWays
      const q = (params: Record<string, string>) => `/orders/search?${new URLSearchParams(params)}`
      const paged = yield* request(bases[1]!, q({ q: model.customer_id, limit: "1" }), {})
      const cursor = (JSON.parse(Buffer.from(paged.body, "hex").toString()) as { next_cursor: string })
        .next_cursor
      expect(cursor, "a customer with two orders has a second page").toEqual(expect.any(String))
      const cases: ReadonlyArray<readonly [string, string, number]> = [
        ["by order id", q({ q: model.order_uid }), 200],
        ["by e-mail, another case, spaces around", q({ q: `  ${model.delivery.email.toUpperCase()} ` }), 200],
        ["by item rid", q({ q: unicode.items[0]!.rid }), 200],
        ["nothing found", q({ q: "no-such-thing" }), 200],
        ["a page of one", q({ q: model.customer_id, limit: "1" }), 200],
        ["the next page", q({ q: model.customer_id, limit: "1", cursor }), 200],
        ["a date range", q({ from: "2000-01-01T00:00:00Z", to: "2100-01-01T00:00:00Z" }), 200],
        ["a cursor the service never gave", q({ q: model.customer_id, cursor: "bogus" }), 400],
        ["no parameter at all", "/orders/search", 400],
        ["q given twice", `/orders/search?q=a&q=b`, 400],
        ["a control character", q({ q: "a\u0001b" }), 400],
        ["limit 0", q({ q: "a", limit: "0" }), 400],
        ["from after to", q({ from: "2030-01-01T00:00:00Z", to: "2020-01-01T00:00:00Z" }), 400],
        ["q too long", q({ q: "x".repeat(257) }), 400]
      ]
      for (const [name, target, status] of cases) {
        const [viaFastPath, viaHandler] = yield* Effect.all(bases.map((base) => request(base, target, {})))
        expect(viaHandler.status, name).toBe(status)
        expect(viaHandler, name).toStrictEqual(viaFastPath)
      }
      const found = yield* request(bases[0]!, q({ q: model.order_uid }), {})
      expect(JSON.parse(Buffer.from(found.body, "hex").toString())).toMatchObject({
        items: [{ order_uid: model.order_uid }],
        next_cursor: null
      })
      expect(found.headers).toMatchObject({ "content-type": "application/json", "cache-control": "no-store" })
    }).pipe(Effect.scoped)
  )
})
