import { createHash } from "node:crypto"
import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer, Option } from "effect"
import {
  findStored,
  findStoredJson,
  mostRecentStored,
  newestFirstUids,
  storedCount
} from "../support/orders.ts"
import { Order, type OrderJson } from "../../src/orders/Order.ts"
import { orderToJson, orderToJsonString } from "../../src/orders/OrderDecoder.ts"
import { OrderRepository, type RecentOrders } from "../../src/orders/OrderRepository.ts"
import orderSummaryColumns from "../../src/db/migrations/0008_order_summary_columns.ts"
import { sampleOrders } from "../support/arbitraries.ts"
import { TestDatabase } from "../support/database.ts"
import { readFixtureJson } from "../support/fixtures.ts"
import { Schema } from "effect"

const toOrder = Schema.decodeUnknownSync(Order)
const orders = (count: number, prefix: string) => sampleOrders(count, count, prefix).map((o) => toOrder(o))

/** Each test gets its own empty database. */
const withRepository = <A, E>(effect: Effect.Effect<A, E, OrderRepository | SqlClient.SqlClient>) =>
  effect.pipe(Effect.provide(OrderRepository.Default.pipe(Layer.provideMerge(TestDatabase))))

const tableCounts = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  const [row] = yield* sql<{ orders: string; deliveries: string; payments: string; items: string }>`
    SELECT (SELECT count(*) FROM orders) AS orders, (SELECT count(*) FROM deliveries) AS deliveries,
           (SELECT count(*) FROM payments) AS payments, (SELECT count(*) FROM items) AS items`
  return {
    orders: Number(row!.orders),
    deliveries: Number(row!.deliveries),
    payments: Number(row!.payments),
    items: Number(row!.items)
  }
})

describe("OrderRepository on a real PostgreSQL", () => {
  it.live("a batch of 1,000 orders lands in one transaction, with all their parts", () =>
    withRepository(
      Effect.gen(function* () {
        const repo = yield* OrderRepository
        const batch = orders(1000, "bulk")
        const started = Date.now()
        const outcomes = yield* repo.insertBatch(batch)
        yield* Effect.logInfo(`1,000-order batch stored in ${Date.now() - started} ms`)
        expect(outcomes.every((o) => o === "inserted")).toBe(true)
        const itemCount = batch.reduce((n, o) => n + o.items.length, 0)
        expect(yield* tableCounts).toEqual({
          orders: 1000,
          deliveries: 1000,
          payments: 1000,
          items: itemCount
        })
        // One transaction: every row carries the same transaction id.
        const sql = yield* SqlClient.SqlClient
        const xids = yield* sql<{ n: string }>`SELECT count(DISTINCT xmin::text) AS n FROM orders`
        expect(Number(xids[0]!.n)).toBe(1)
      })
    )
  )

  it.live("the same batch again writes nothing and reports duplicates", () =>
    withRepository(
      Effect.gen(function* () {
        const repo = yield* OrderRepository
        const batch = orders(200, "again")
        yield* repo.insertBatch(batch)
        const before = yield* tableCounts
        const outcomes = yield* repo.insertBatch(batch)
        expect(new Set(outcomes)).toEqual(new Set(["duplicate"]))
        expect(yield* tableCounts).toEqual(before)
      })
    )
  )

  it.live("a changed order under a stored uid is a conflict and the stored one stays", () =>
    withRepository(
      Effect.gen(function* () {
        const repo = yield* OrderRepository
        const original = toOrder(readFixtureJson("valid/model.json"))
        yield* repo.insertBatch([original])
        const json = orderToJson(original) as any
        const changed = toOrder({ ...json, delivery: { ...json.delivery, city: "Haifa" } })
        const fresh = orders(3, "next")
        const outcomes = yield* repo.insertBatch([fresh[0]!, changed, fresh[1]!, original, fresh[2]!])
        expect(outcomes).toEqual(["inserted", "conflict", "inserted", "duplicate", "inserted"])
        const stored = yield* findStored(original.order_uid)
        expect(Option.getOrThrow(stored).delivery.city).toBe("Kiryat Mozkin")
      })
    )
  )

  it.live("inside one batch the first order under a uid wins", () =>
    withRepository(
      Effect.gen(function* () {
        const repo = yield* OrderRepository
        const [a] = orders(1, "twice")
        const json = orderToJson(a!) as any
        const other = toOrder({ ...json, customer_id: "someone-else" })
        const outcomes = yield* repo.insertBatch([a!, a!, other])
        expect(outcomes).toEqual(["inserted", "duplicate", "conflict"])
        expect((yield* tableCounts).orders).toBe(1)
      })
    )
  )

  it.live("a failure mid-batch leaves no partial order behind", () =>
    withRepository(
      Effect.gen(function* () {
        const repo = yield* OrderRepository
        const sql = yield* SqlClient.SqlClient
        const batch = orders(50, "partial")
        // Items are written after orders, deliveries and payments: make the items statement fail.
        yield* sql`ALTER TABLE items ADD CONSTRAINT no_items_named_boom CHECK (name <> 'boom')`
        const bad = orderToJson(batch[30]!) as any
        batch[30] = toOrder({
          ...bad,
          items: bad.items.map((i: any, n: number) => (n === 0 ? { ...i, name: "boom" } : i))
        })
        const result = yield* Effect.either(repo.insertBatch(batch))
        expect(result._tag).toBe("Left")
        expect(yield* tableCounts).toEqual({ orders: 0, deliveries: 0, payments: 0, items: 0 })
      })
    )
  )

  it.live("a stored order reads back exactly as inserted, int64 values and unicode included", () =>
    withRepository(
      Effect.gen(function* () {
        const repo = yield* OrderRepository
        const unicode = readFixtureJson("valid/multi-item-unicode.json") as OrderJson
        const big = readFixtureJson("valid/model.json") as any
        big.order_uid = "big-ints"
        big.payment.payment_dt = 2 ** 33 + 5
        big.items[0].chrt_id = Number.MAX_SAFE_INTEGER
        big.items[0].nm_id = 2 ** 52 + 1
        const sample = sampleOrders(20, 7, "exact")
        const all: Array<unknown> = [unicode, big, ...sample]
        yield* repo.insertBatch(all.map((o) => toOrder(o)))
        for (const json of all) {
          const uid = (json as OrderJson).order_uid
          const found = Option.getOrThrow(yield* findStoredJson(uid))
          expect(JSON.parse(found.json)).toStrictEqual(json)
          // The digest read back with it is the SHA-256 of exactly that text: the ETag served.
          expect(found.digest).toBe(createHash("sha256").update(found.json).digest("base64url"))
          expect(orderToJson(Option.getOrThrow(yield* findStored(uid)))).toStrictEqual(json)
        }
        expect(Option.isNone(yield* findStoredJson("no-such-order"))).toBe(true)
      })
    )
  )

  it.live("listRecent pages newest first without gaps or repeats", () =>
    withRepository(
      Effect.gen(function* () {
        const repo = yield* OrderRepository
        const batch = orders(137, "page")
        // Several orders share a timestamp so the uid must break ties.
        const json = batch.map((o, i) => ({
          ...(orderToJson(o) as any),
          date_created: `2024-01-0${1 + (i % 5)}T10:00:00Z`
        }))
        yield* repo.insertBatch(json.map((o) => toOrder(o)))
        const seen: Array<string> = []
        let cursor = Option.none<string>()
        let pages = 0
        do {
          const page = yield* repo.listRecent(20, cursor)
          seen.push(...page.items.map((i) => i.order_uid))
          cursor = page.nextCursor
          pages++
        } while (Option.isSome(cursor))
        expect(pages).toBe(7)
        expect(new Set(seen).size).toBe(137)
        const expected = newestFirstUids(json)
        expect(seen).toEqual(expected)
        expect(yield* storedCount).toBe(137)
        const bad = yield* Effect.either(repo.listRecent(10, Option.some("not-a-cursor")))
        expect(bad._tag === "Left" && bad.left._tag).toBe("InvalidCursor")
      })
    )
  )

  it.live("orders stored before the document column read back the same, rebuilt from their tables", () =>
    withRepository(
      Effect.gen(function* () {
        const repo = yield* OrderRepository
        const sql = yield* SqlClient.SqlClient
        const unicode = toOrder(readFixtureJson("valid/multi-item-unicode.json"))
        const model = toOrder(readFixtureJson("valid/model.json"))
        yield* repo.insertBatch([unicode, model])
        const before = yield* repo.mostRecentJson(2)
        const stored = yield* sql<{ document: string }>`
          SELECT document FROM orders WHERE order_uid = ${unicode.order_uid}`
        expect(stored[0]!.document).toBe(orderToJsonString(unicode))
        yield* sql`UPDATE orders SET document = NULL`
        expect(yield* repo.mostRecentJson(2)).toStrictEqual(before)
        const found = yield* findStoredJson(unicode.order_uid)
        expect(Option.getOrThrow(found).json).toBe(orderToJsonString(unicode))
      })
    )
  )

  it.live("orders stored before summaries were on orders list with their amount, currency and items", () =>
    withRepository(
      Effect.gen(function* () {
        const repo = yield* OrderRepository
        const sql = yield* SqlClient.SqlClient
        const stored = [
          toOrder(readFixtureJson("valid/multi-item-unicode.json")),
          toOrder(readFixtureJson("valid/model.json")),
          ...orders(20, "summary")
        ]
        yield* repo.insertBatch(stored)
        const expected = new Map(
          stored.map((o) => [
            o.order_uid,
            { amount: o.payment.amount, currency: o.payment.currency, item_count: o.items.length }
          ])
        )
        const summaries = (page: RecentOrders) =>
          page.items.map(
            ({ order_uid, amount, currency, item_count }) =>
              [order_uid, { amount, currency, item_count }] as const
          )
        const listed = yield* repo.listRecent(50, Option.none())
        expect(listed.items).toHaveLength(stored.length)
        expect(new Map(summaries(listed))).toStrictEqual(expected)
        // The database as it was before migration 0008; running it fills the columns from the tables.
        yield* sql`ALTER TABLE orders DROP COLUMN amount, DROP COLUMN currency, DROP COLUMN item_count`
        yield* orderSummaryColumns
        expect(yield* repo.listRecent(50, Option.none())).toStrictEqual(listed)
        const columns = yield* sql<{ column_name: string; is_nullable: string }>`
          SELECT column_name, is_nullable FROM information_schema.columns
          WHERE table_name = 'orders' AND column_name IN ('amount', 'currency', 'item_count')`
        expect(columns.map((c) => c.is_nullable)).toEqual(["NO", "NO", "NO"])
      })
    )
  )

  it.live("the most recent orders come back newest of all, oldest of them first, in pages", () =>
    withRepository(
      Effect.gen(function* () {
        const repo = yield* OrderRepository
        const batch = orders(30, "recent").map((o, i) =>
          toOrder({
            ...(orderToJson(o) as any),
            date_created: new Date(Date.UTC(2024, 0, 1, 0, i)).toISOString()
          })
        )
        yield* repo.insertBatch(batch)
        const recent = yield* mostRecentStored(5)
        expect(recent.map((o) => o.order_uid)).toEqual(batch.slice(25).map((o) => o.order_uid))
        // Read in pages: several pages must come back whole and in order.
        const all = yield* repo.mostRecentJson(30, 7)
        expect(all.map((r) => r.uid)).toEqual(batch.map((o) => o.order_uid))
        expect(JSON.parse(all[3]!.json)).toStrictEqual(orderToJson(batch[3]!))
      })
    )
  )
})
