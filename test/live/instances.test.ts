/**
 * Two instances of the service in one consumer group, on one database: the group spreads the
 * partitions over both, each stores the orders of its own, and a browser connected to either sees
 * every order, whichever instance stored it.
 */
import { describe, expect, it } from "@effect/vitest"
import { Context, Effect, Layer, Option, Redacted } from "effect"
import { AssignerProtocol } from "kafkajs"
import * as App from "../../src/App.ts"
import { OrderCache } from "../../src/cache/OrderCache.ts"
import * as Database from "../../src/db/Database.ts"
import { HttpAddress } from "../../src/http/HttpServer.ts"
import { KafkaClient } from "../../src/kafka/KafkaClient.ts"
import { generateOrders } from "../../src/tools/OrderGenerator.ts"
import { createTestDatabase } from "../support/database.ts"
import {
  createTopics,
  eventually,
  freshTopics,
  kafkaFor,
  produce,
  readTopic,
  testConfig
} from "../support/kafka.ts"
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

/**
 * The group's partitions of `topic` by the process their member runs in (the id each member
 * names in its metadata), once the group is stable; empty while it is still joining.
 */
const partitionsByInstance = (topics: ReturnType<typeof freshTopics>) =>
  Effect.promise(async () => {
    const admin = kafkaFor(topics.brokers).admin()
    await admin.connect()
    try {
      const { groups } = await admin.describeGroups([topics.groupId])
      const group = groups[0]
      const byInstance = new Map<string, Array<number>>()
      if (group === undefined || group.state !== "Stable") return byInstance
      for (const member of group.members) {
        const instance = AssignerProtocol.MemberMetadata.decode(member.memberMetadata)?.userData.toString(
          "utf8"
        )
        const assigned = AssignerProtocol.MemberAssignment.decode(member.memberAssignment)?.assignment
        const partitions = assigned?.[topics.topic] ?? []
        const key = instance || member.memberId
        byInstance.set(key, [...(byInstance.get(key) ?? []), ...partitions].sort())
      }
      return byInstance
    } finally {
      await admin.disconnect()
    }
  })

describe("the live feed with two instances in one consumer group", () => {
  it.live(
    "each instance stores the orders of its partitions, and an order stored by either reaches the clients of both, with the same ids in the same order",
    () =>
      Effect.gen(function* () {
        const topics = freshTopics()
        yield* createTopics(topics)
        const url = yield* createTestDatabase
        const a = yield* Layer.build(instance(url, topics))
        const b = yield* Layer.build(instance(url, topics))
        const clientOfA = yield* openSse(`${Context.get(a, HttpAddress).url}/orders/live`)
        const clientOfB = yield* openSse(`${Context.get(b, HttpAddress).url}/orders/live`)

        // Both instances in the group, the three partitions spread over them (two and one).
        yield* eventually(
          "the group gives each instance partitions",
          Effect.map(partitionsByInstance(topics), (byInstance) => {
            const counts = [...byInstance.values()].map((p) => p.length).sort((x, y) => x - y)
            return counts.length === 2 && counts[0] === 1 && counts[1] === 2
          }),
          90_000
        )

        const orders = generateOrders(60, 7)
        yield* produce(
          topics.brokers,
          topics.topic,
          orders.map((o) => ({ key: o.order_uid, value: JSON.stringify(o) }))
        )
        const uidsOf = (client: typeof clientOfA) => ordersOf(client).map((o) => o.order_uid)
        for (const [name, client] of [
          ["A", clientOfA],
          ["B", clientOfB]
        ] as const) {
          yield* waitUntil(
            `the client of instance ${name} saw all 60 orders`,
            () => uidsOf(client).length >= 60,
            90_000,
            () => `${uidsOf(client).length} so far`
          )
        }

        // Which instance took which order: each caches what it committed.
        const cachedBy = (context: Context.Context<OrderCache>) =>
          orders
            .map((o) => o.order_uid)
            .filter((uid) =>
              Option.isSome(Context.get(context, OrderCache).unsafeGet(uid, { countMiss: false }))
            )
        const [byA, byB] = [cachedBy(a), cachedBy(b)]
        yield* Effect.logInfo(`instance A stored ${byA.length} orders, instance B ${byB.length}`)
        expect(byA.length).toBeGreaterThan(0)
        expect(byB.length).toBeGreaterThan(0)
        expect([...byA, ...byB].sort()).toEqual(orders.map((o) => o.order_uid).sort())
        // The split follows the partitions: one partition's orders were all taken by one instance.
        const partitionOf = new Map(
          (yield* readTopic(topics.brokers, topics.topic)).map((r) => [r.key!.toString(), r.partition])
        )
        const partitionsOf = (uids: ReadonlyArray<string>) => [
          ...new Set(uids.map((u) => partitionOf.get(u)))
        ]
        expect(partitionsOf(byA).filter((p) => partitionsOf(byB).includes(p))).toEqual([])

        // The feed crosses instances: each client saw every order, the other instance's too.
        expect(uidsOf(clientOfA).sort()).toEqual(orders.map((o) => o.order_uid).sort())
        expect(byB.filter((uid) => !uidsOf(clientOfA).includes(uid))).toEqual([])
        expect(byA.filter((uid) => !uidsOf(clientOfB).includes(uid))).toEqual([])
        // Every instance sees the stream in commit order: the same events, ids and order.
        const idsAndUids = (c: typeof clientOfA) =>
          c.events.filter((e) => e.event === "order").map((e) => [e.id, JSON.parse(e.data).order_uid])
        expect(idsAndUids(clientOfB)).toEqual(idsAndUids(clientOfA))
      }).pipe(Effect.scoped),
    180_000
  )
})
