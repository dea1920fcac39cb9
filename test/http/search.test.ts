/** `GET /orders/search` and `/orders/live` over HTTP, as declared in the OpenAPI document. */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Schema } from "effect"
import { Order, type OrderJson } from "../../src/orders/Order.ts"
import { OrderRepository } from "../../src/orders/OrderRepository.ts"
import { apiClient, get, httpStack } from "../support/app.ts"
import { TestDatabase } from "../support/database.ts"
import { readFixtureJson } from "../support/fixtures.ts"

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
          urlParams: { from: "2000-01-01T00:00:00Z", to: "2100-01-01T00:00:00Z", limit: "1" }
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
        ["q=x&cursor=bogus", /^cursor: the cursor is not one this service gave out$/]
      ]
      for (const [params, message] of cases) {
        const response = yield* get(`/orders/search?${params}`)
        expect(response.status, params).toBe(400)
        const body = yield* json(response)
        expect(body.error, params).toBe("invalid_query")
        expect(body.message, params).toMatch(message)
      }
    }).pipe(Effect.provide(stack))
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
