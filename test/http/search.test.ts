/**
 * `GET /orders/search` over HTTP, as declared in the OpenAPI document: what it finds, how it
 * refuses a parameter, what it does when its client goes; and the live feed's entry in the document.
 */
import { describe, expect, it } from "@effect/vitest"
import { Context, Effect, Layer, Redacted, Schema } from "effect"
import { ClientReads } from "../../src/db/ClientReads.ts"
import * as Database from "../../src/db/Database.ts"
import { HttpAddress } from "../../src/http/HttpServer.ts"
import { Order, type OrderJson } from "../../src/orders/Order.ts"
import { OrderRepository } from "../../src/orders/OrderRepository.ts"
import { apiClient, get, httpStack } from "../support/app.ts"
import { createTestDatabase, TestDatabase } from "../support/database.ts"
import { readFixtureJson } from "../support/fixtures.ts"
import { metricValue, parseMetrics } from "../support/metrics.ts"
import { waitUntil } from "../support/sse.ts"

const toOrder = Schema.decodeUnknownSync(Order)
const model = readFixtureJson("valid/model.json") as OrderJson
const unicode = readFixtureJson("valid/multi-item-unicode.json") as OrderJson

const seed = Effect.flatMap(OrderRepository, (repo) =>
  repo.insertBatch([model, unicode].map((o) => toOrder(o)))
)

const json = (response: Response) => Effect.promise(() => response.json() as Promise<any>)

describe("searching over HTTP", () => {
  const stack = httpStack(TestDatabase)

  it.live(
    "a track number, a phone as typed, an e-mail in capitals: the orders that have it, as summaries",
    () =>
      Effect.gen(function* () {
        yield* seed
        const byTrack = yield* get(`/orders/search?q=${encodeURIComponent(` ${model.track_number} `)}`)
        expect(byTrack.status).toBe(200)
        expect(yield* json(byTrack)).toStrictEqual({
          items: [
            {
              order_uid: model.order_uid,
              date_created: model.date_created,
              customer_id: model.customer_id,
              amount: model.payment.amount,
              currency: model.payment.currency,
              item_count: 1
            }
          ],
          next_cursor: null
        })
        // The typed client reads the same answer, as the OpenAPI document declares it.
        const client = yield* apiClient
        // Both fixtures were ordered with the same phone and e-mail.
        const both = [model.order_uid, unicode.order_uid].sort()
        const byPhone = yield* client.orders.searchOrders({ urlParams: { q: "+972 (000) 00-00" } })
        expect(byPhone.items.map((i) => i.order_uid).sort()).toEqual(both)
        const byEmail = yield* client.orders.searchOrders({ urlParams: { q: "TEST@Gmail.com" } })
        expect(byEmail.items.map((i) => i.order_uid).sort()).toEqual(both)
        const byRid = yield* client.orders.searchOrders({ urlParams: { q: unicode.items[1]!.rid } })
        expect(byRid.items.map((i) => i.order_uid)).toEqual([unicode.order_uid])
        const nothing = yield* client.orders.searchOrders({ urlParams: { q: "no-such-thing" } })
        expect(nothing).toStrictEqual({ items: [], next_cursor: null })
        // A date range alone lists what was created in it; a page at a time.
        const range = yield* client.orders.searchOrders({
          urlParams: { from: "2000-01-01T00:00:00Z", to: "2100-01-01T00:00:00Z", limit: 1 }
        })
        expect(range.items).toHaveLength(1)
        expect(range.next_cursor).not.toBeNull()
        const rest = yield* client.orders.searchOrders({
          urlParams: { from: "2000-01-01T00:00:00Z", to: "2100-01-01T00:00:00Z", cursor: range.next_cursor! }
        })
        expect([...range.items, ...rest.items].map((i) => i.order_uid).sort()).toEqual(
          [model.order_uid, unicode.order_uid].sort()
        )
      }).pipe(Effect.provide(stack))
  )

  it.live("a bad parameter is a 400 whose message names it and says why", () =>
    Effect.gen(function* () {
      const cases: ReadonlyArray<readonly [string, RegExp]> = [
        ["", /^give q \(what to look for\), from or to$/],
        ["q=%20%20", /^give q/],
        [`q=${"x".repeat(257)}`, /^q must be at most 256 characters; it has 257$/],
        ["q=a%09b", /^q must not contain control characters/],
        ["q=x&from=yesterday", /^from must be an RFC 3339 timestamp.*"yesterday"/],
        ["q=x&to=2024-01-01", /^to must be an RFC 3339 timestamp.*"2024-01-01"/],
        ["from=2024-01-02T00:00:00Z&to=2024-01-01T00:00:00Z", /^from must be before to$/],
        ["q=x&limit=0", /^limit must be a whole number from 1 to 100$/],
        ["q=x&limit=101", /^limit must be a whole number from 1 to 100$/],
        ["q=x&limit=ten", /^limit must be a whole number from 1 to 100$/],
        ["q=x&limit=", /^limit must be a whole number from 1 to 100$/],
        ["q=x&cursor=bogus", /^cursor: the cursor is not one this service gave out$/],
        ["from=2000-01-01T00:00:00Z&cursor=bogus", /^cursor: the cursor is not one this service gave out$/],
        ["q=a&q=b", /^q must be given once$/],
        ["q=x&limit=1&limit=2", /^limit must be given once$/]
      ]
      for (const [params, message] of cases) {
        const response = yield* get(`/orders/search?${params}`)
        expect(response.status, params).toBe(400)
        const body = yield* json(response)
        expect(body.error, params).toBe("invalid_query")
        expect(body.message, params).toMatch(message)
      }
      // Written as people and programs write them: what is not read is ignored, `+` is a space
      // and `%2B` a plus, a broken escape is taken as it is; none of these is refused.
      for (const params of [
        `q=${model.order_uid}&page=2&sort=asc`,
        "q=%2B972%20(000)%2000-00",
        "q=TEST@Gmail.com+",
        "q=%E0%A4%A"
      ]) {
        const response = yield* get(`/orders/search?${params}`)
        expect(response.status, params).toBe(200)
      }
      // And the listing of recent orders refuses its parameters alike.
      const refused = yield* get("/orders?limit=5&limit=6")
      expect(refused.status).toBe(400)
      expect(yield* json(refused)).toStrictEqual({
        _tag: "InvalidQuery",
        error: "invalid_query",
        message: "limit must be given once"
      })
    }).pipe(Effect.provide(stack))
  )

  it.live("a search whose client leaves while it waits for a connection never runs, and is counted 499", () =>
    Effect.gen(function* () {
      const url = yield* createTestDatabase
      const database = Database.layer({ url: Redacted.make(url), maxConnections: 4 })
      // pool_max 3: reads for clients get one connection, held here, so searches wait in line.
      const stack = yield* Layer.build(httpStack(database, { database: { pool_max: 3 } }))
      yield* seed.pipe(Effect.provide(stack))
      const base = Context.get(stack, HttpAddress).url
      const reads = Context.get(stack, ClientReads)
      const metrics = () => Effect.promise(() => fetch(`${base}/metrics`).then((r) => r.text()))
      const gone499 = (text: string) =>
        metricValue(parseMetrics(text), "http_request_duration_seconds_count", {
          method: "GET",
          route: "/orders/search",
          status: "499"
        })
      const before = gone499(yield* metrics())
      let held = false
      reads.unsafeAcquire(() => (held = true))
      expect(held).toBe(true)

      const leaving = new AbortController()
      const gone = fetch(`${base}/orders/search?q=${model.track_number}`, { signal: leaving.signal }).then(
        (response) => response.status,
        () => "aborted"
      )
      yield* waitUntil("the search waits in line", () => reads.line.size() === 1)
      leaving.abort()
      expect(yield* Effect.promise(() => gone)).toBe("aborted")
      // Its client gone, the search leaves the line before it ever runs.
      yield* waitUntil("the search left the line", () => reads.line.size() === 0)
      const next = fetch(`${base}/orders/search?q=${model.track_number}`)
      yield* waitUntil("the next search waits in line", () => reads.line.size() === 1)
      reads.release()
      const answered = yield* Effect.promise(() => next)
      expect(answered.status).toBe(200)
      expect(((yield* Effect.promise(() => answered.json())) as any).items).toHaveLength(1)
      expect(gone499(yield* metrics()) - before).toBe(1)
    }).pipe(Effect.scoped)
  )

  it.live("the OpenAPI document describes the search's parameters and the live feed's event stream", () =>
    Effect.gen(function* () {
      const document = yield* json(yield* get("/openapi.json"))
      const search = document.paths["/orders/search"].get
      expect(search.parameters.map((p: { name: string }) => p.name).sort()).toEqual(
        ["cursor", "from", "limit", "q", "to"].sort()
      )
      expect(search.responses["400"]).toBeDefined()
      const live = document.paths["/orders/live"].get
      expect(Object.keys(live.responses["200"].content)).toEqual(["text/event-stream"])
      expect(live.description).toMatch(/Last-Event-ID/)
    }).pipe(Effect.provide(stack))
  )
})
