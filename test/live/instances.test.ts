/**
 * Two instances of the service in one consumer group, on one database: a browser connected to
 * either sees every order, whichever instance stored it.
 */
import { describe, expect, it } from "@effect/vitest"
import { Context, Effect, Layer, Option, Redacted } from "effect"
import * as App from "../../src/App.ts"
import { OrderCache } from "../../src/cache/OrderCache.ts"
import * as Database from "../../src/db/Database.ts"
import { HttpAddress } from "../../src/http/HttpServer.ts"
import { KafkaClient } from "../../src/kafka/KafkaClient.ts"
import { generateOrders } from "../../src/tools/OrderGenerator.ts"
import { createTestDatabase } from "../support/database.ts"
import { createTopics, freshTopics, produce, testConfig } from "../support/kafka.ts"
import { openSse, ordersOf, waitUntil } from "../support/sse.ts"

/** One instance: HTTP (with the live feed) and ingestion, on the shared database and topics. */
const instance = (url: string, topics: ReturnType<typeof freshTopics>) =>
  App.layerServices(KafkaClient.Default).pipe(
    Layer.provideMerge(Database.layer({ url: Redacted.make(url), maxConnections: 4 })),
    Layer.provide(
      testConfig(topics, {
        http: { host: "127.0.0.1", port: 0, access_log: false, shutdown_timeout: "5 seconds" },
        cache: { max_entries: 10_000, warm_count: 0 }
      })
    )
  )

describe("the live feed with two instances in one consumer group", () => {
  it.live(
    "an order stored by either instance reaches the clients of both, with the same ids in the same order",
    () =>
      Effect.gen(function* () {
        const topics = freshTopics()
        yield* createTopics(topics)
        const url = yield* createTestDatabase
        const a = yield* Layer.build(instance(url, topics))
        const b = yield* Layer.build(instance(url, topics))
        const clientOfA = yield* openSse(`${Context.get(a, HttpAddress).url}/orders/live`)
        const clientOfB = yield* openSse(`${Context.get(b, HttpAddress).url}/orders/live`)

        const orders = generateOrders(60, 7)
        yield* produce(
          topics.brokers,
          topics.topic,
          orders.map((o) => ({ key: o.order_uid, value: JSON.stringify(o) }))
        )
        for (const [name, client] of [
          ["A", clientOfA],
          ["B", clientOfB]
        ] as const) {
          yield* waitUntil(
            `the client of instance ${name} saw all 60 orders`,
            () => ordersOf(client).length >= 60,
            90_000,
            () => `${ordersOf(client).length} so far`
          )
        }
        const sent = orders.map((o) => o.order_uid).sort()
        expect(
          ordersOf(clientOfA)
            .map((o) => o.order_uid)
            .sort()
        ).toEqual(sent)
        // Every instance sees the stream in commit order: the same events, ids and order.
        const idsAndUids = (c: typeof clientOfA) =>
          c.events.filter((e) => e.event === "order").map((e) => [e.id, JSON.parse(e.data).order_uid])
        expect(idsAndUids(clientOfB)).toEqual(idsAndUids(clientOfA))

        // Which instance took which order: each caches what it committed (an order stored by one
        // instance and, after a rebalance, committed by the other is cached by the other).
        const storedBy = (context: Context.Context<OrderCache>) =>
          orders.filter((o) =>
            Option.isSome(Context.get(context, OrderCache).unsafeGet(o.order_uid, { countMiss: false }))
          ).length
        const [byA, byB] = [storedBy(a), storedBy(b)]
        yield* Effect.logInfo(`instance A stored ${byA} orders, instance B ${byB}`)
        expect(byA + byB).toBe(60)
        // Whatever the split, each client saw every order the other instance stored.
        expect(Math.max(byA, byB)).toBeGreaterThan(0)
      }).pipe(Effect.scoped),
    180_000
  )
})
