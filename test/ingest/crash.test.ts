import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Redacted } from "effect"
import * as Database from "../../src/db/Database.ts"
import { freePort } from "../../src/local/freePort.ts"
import { sampleOrders } from "../support/arbitraries.ts"
import { createTestDatabase } from "../support/database.ts"
import { createTopics, eventually, freshTopics, offsets, produce, readTopic } from "../support/kafka.ts"
import { scopedService, serviceUrl, withServiceOutput } from "../support/service.ts"

const TOTAL = 20_000

describe("a crash in the middle of a backlog", () => {
  it.live(
    "the service SIGKILLed mid-backlog and started again stores exactly 20,000 orders, none twice, none dead-lettered",
    () =>
      Effect.gen(function* () {
        const databaseUrl = yield* createTestDatabase
        yield* crashAndRestart(databaseUrl).pipe(
          Effect.provide(Database.layerWith({ url: Redacted.make(databaseUrl), maxConnections: 2 }))
        )
      }).pipe(Effect.scoped),
    300_000
  )
})

const crashAndRestart = (databaseUrl: string) =>
  Effect.gen(function* () {
    const topics = freshTopics()
    const orders = sampleOrders(TOTAL, 77, "crash")
    yield* createTopics(topics)
    yield* produce(
      topics.brokers,
      topics.topic,
      orders.map((o) => ({ key: o.order_uid, value: JSON.stringify(o) }))
    )
    const env = {
      CONFIG_FILE: "config/config.yaml",
      DATABASE_URL: databaseUrl,
      KAFKA_BROKERS: topics.brokers,
      KAFKA_TOPIC: topics.topic,
      KAFKA_DLQ_TOPIC: topics.dlqTopic,
      KAFKA_GROUP_ID: topics.groupId,
      HTTP_HOST: "127.0.0.1",
      HTTP_PORT: String(yield* Effect.promise(freePort)),
      HTTP_ACCESS_LOG: "false",
      CACHE_WARM_COUNT: "0",
      LOG_LEVEL: "Warning"
    }
    const sql = yield* SqlClient.SqlClient
    const stored = Effect.map(sql<{ n: string }>`SELECT count(*) AS n FROM orders`, (r) =>
      Number(r[0]!.n)
    ).pipe(
      // The service creates the tables; until then there is nothing stored.
      Effect.orElseSucceed(() => 0)
    )

    const first = yield* scopedService(env)
    yield* eventually(
      "the first service is part-way through",
      Effect.map(stored, (n) => n >= 2_000),
      90_000
    ).pipe(withServiceOutput(first))
    first.child.kill("SIGKILL")
    expect(yield* Effect.promise(() => first.exited)).toBe("SIGKILL")
    const atCrash = yield* stored
    expect(atCrash).toBeLessThan(TOTAL)

    const second = yield* scopedService(env)
    yield* serviceUrl(second)
    yield* eventually(
      "every order is stored",
      Effect.map(stored, (n) => n === TOTAL),
      120_000
    ).pipe(withServiceOutput(second))
    yield* eventually(
      "every offset is committed",
      Effect.map(offsets(topics.brokers, topics.topic, topics.groupId), ({ committed, ends }) =>
        Object.entries(ends).every(([p, end]) => committed[Number(p)] === end)
      ),
      30_000
    )
    second.child.kill("SIGTERM")
    expect(yield* Effect.promise(() => second.exited)).toBe(0)

    const [row] = yield* sql<{ orders: string; distinct_uids: string; items: string }>`
          SELECT count(*) AS orders, count(DISTINCT order_uid) AS distinct_uids,
                 (SELECT count(*) FROM items) AS items FROM orders`
    expect(Number(row!.orders)).toBe(TOTAL)
    expect(Number(row!.distinct_uids)).toBe(TOTAL)
    expect(Number(row!.items)).toBe(orders.reduce((n, o) => n + o.items.length, 0))
    expect(yield* readTopic(topics.brokers, topics.dlqTopic, 0, 1_000)).toHaveLength(0)
    yield* Effect.logInfo(`stored ${atCrash} orders before the crash`)
  }).pipe(Effect.scoped)
