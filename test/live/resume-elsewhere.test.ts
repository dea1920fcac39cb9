/**
 * A browser on the live feed that loses its instance reconnects to another one with the id of the
 * last event it saw (`Last-Event-ID`), and is sent what it missed there: every instance numbers
 * events alike (the database's `feed_seq`), whichever instance stored the orders and however long
 * it has been running.
 */
import { describe, expect, it } from "@effect/vitest"
import { Context, Effect, Layer, Redacted } from "effect"
import * as App from "../../src/App.ts"
import * as Database from "../../src/db/Database.ts"
import { HttpAddress } from "../../src/http/HttpServer.ts"
import { KafkaClient } from "../../src/kafka/KafkaClient.ts"
import { generateOrders } from "../../src/tools/OrderGenerator.ts"
import { createTestDatabase } from "../support/database.ts"
import { createTopics, freshTopics, produce, testConfig, type TestTopics } from "../support/kafka.ts"
import { openSse, ordersOf, waitUntil, type SseClient } from "../support/sse.ts"

/** One instance: HTTP (with the live feed) and ingestion, on the shared database and topics. */
const instance = (url: string, topics: TestTopics) =>
  App.layerServices(KafkaClient.Default).pipe(
    Layer.provideMerge(Database.layer({ url: Redacted.make(url), maxConnections: 4 })),
    Layer.provide(
      testConfig(topics, {
        http: { host: "127.0.0.1", port: 0, access_log: false, shutdown_timeout: "5 seconds" },
        cache: { max_entries: 10_000, warm_count: 0 }
      })
    )
  )

/** The `order` events a client was sent, as [id, order_uid]. */
const orderEvents = (client: SseClient) =>
  client.events.filter((e) => e.event === "order").map((e) => [e.id, JSON.parse(e.data).order_uid as string])

const seesOrders = (name: string, client: SseClient, count: number) =>
  waitUntil(
    `${name} saw ${count} orders`,
    () => ordersOf(client).length >= count,
    60_000,
    () => `${ordersOf(client).length} so far`
  )

describe("resuming the live feed on another instance", () => {
  it.live(
    "a client that saw some orders on instance A and reconnects to instance B with Last-Event-ID is sent exactly the orders it missed, with the ids A sends",
    () =>
      Effect.gen(function* () {
        const topics = freshTopics()
        yield* createTopics(topics)
        const url = yield* createTestDatabase
        const [before, seen, missed] = [
          generateOrders(10, 31),
          generateOrders(20, 32),
          generateOrders(20, 33)
        ]
        const publish = (orders: typeof before) =>
          produce(
            topics.brokers,
            topics.topic,
            orders.map((o) => ({ key: o.order_uid, value: JSON.stringify(o) }))
          )

        // Instance A runs alone for a while: it has seen orders B never will.
        const a = yield* Layer.build(instance(url, topics))
        const urlOfA = `${Context.get(a, HttpAddress).url}/orders/live`
        const watcherOfA = yield* openSse(urlOfA)
        yield* publish(before)
        yield* seesOrders("the watcher on A", watcherOfA, 10)

        // Instance B starts; the browser follows the feed on A.
        const b = yield* Layer.build(instance(url, topics))
        const urlOfB = `${Context.get(b, HttpAddress).url}/orders/live`
        const watcherOfB = yield* openSse(urlOfB)
        const browser = yield* openSse(urlOfA)
        yield* publish(seen)
        yield* seesOrders("the browser", browser, 20)
        const lastSeen = orderEvents(browser).at(-1)![0]!
        // A goes away for this browser (its connection drops).
        browser.close()

        // Meanwhile more orders are stored, and both instances send them on.
        yield* publish(missed)
        yield* seesOrders("the watcher on A", watcherOfA, 50)
        yield* seesOrders("the watcher on B", watcherOfB, 40)

        // The browser reconnects, to B, saying the last event it saw.
        const resumed = yield* openSse(urlOfB, { "last-event-id": lastSeen })
        expect(resumed.status).toBe(200)
        yield* seesOrders("the resumed browser", resumed, 20)
        const sentByA = orderEvents(watcherOfA)
        const missedAsASentThem = sentByA.slice(sentByA.findIndex(([id]) => id === lastSeen) + 1)
        expect(missedAsASentThem.map(([, uid]) => uid).sort()).toEqual(missed.map((o) => o.order_uid).sort())
        expect(resumed.events.filter((e) => e.event === "gap")).toEqual([])
        expect(orderEvents(resumed)).toEqual(missedAsASentThem)
      }).pipe(Effect.scoped),
    120_000
  )
})
