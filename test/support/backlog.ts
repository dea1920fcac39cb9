/**
 * A backlog of generated orders waiting on fresh topics, a database for the service, and the
 * accounting a crash or shutdown test ends with.
 */
import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import { expect } from "vitest"
import type { OrderJson } from "../../src/orders/Order.ts"
import { sampleOrders } from "./arbitraries.ts"
import { serviceEnv } from "./service.ts"
import {
  createTopics,
  eventually,
  freshTopics,
  offsets,
  produce,
  readTopic,
  type TestTopics
} from "./kafka.ts"

export interface Backlog {
  readonly topics: TestTopics
  readonly orders: ReadonlyArray<OrderJson>
  /** Environment for `startService`: this backlog, this database, quiet logs, a free port. */
  readonly env: Record<string, string>
  /** Orders stored so far (0 before the service has created its tables). */
  readonly stored: Effect.Effect<number, never, SqlClient.SqlClient>
}

export const backlog = (count: number, seed: number, databaseUrl: string, env: Record<string, string> = {}) =>
  Effect.gen(function* () {
    const topics = freshTopics()
    const orders = sampleOrders(count, seed, `backlog${seed}`)
    yield* createTopics(topics)
    yield* produce(
      topics.brokers,
      topics.topic,
      orders.map((o) => ({ key: o.order_uid, value: JSON.stringify(o) }))
    )
    const stored = Effect.flatMap(SqlClient.SqlClient, (sql) =>
      sql<{ n: string }>`SELECT count(*) AS n FROM orders`.pipe(
        Effect.map((r) => Number(r[0]!.n)),
        Effect.orElseSucceed(() => 0)
      )
    )
    const result: Backlog = {
      topics,
      orders,
      stored,
      env: serviceEnv(topics, databaseUrl, env)
    }
    return result
  })

/** Every order stored exactly once with all its items, every offset committed, no dead letters. */
export const expectStoredExactlyOnce = (b: Backlog) =>
  Effect.gen(function* () {
    yield* eventually(
      "every offset is committed",
      Effect.map(offsets(b.topics.brokers, b.topics.topic, b.topics.groupId), ({ committed, ends }) =>
        Object.entries(ends).every(([p, end]) => committed[Number(p)] === end)
      ),
      30_000
    )
    const sql = yield* SqlClient.SqlClient
    const [row] = yield* sql<{ orders: string; distinct_uids: string; items: string }>`
      SELECT count(*) AS orders, count(DISTINCT order_uid) AS distinct_uids,
             (SELECT count(*) FROM items) AS items FROM orders`
    expect(Number(row!.orders)).toBe(b.orders.length)
    expect(Number(row!.distinct_uids)).toBe(b.orders.length)
    expect(Number(row!.items)).toBe(b.orders.reduce((n, o) => n + o.items.length, 0))
    expect(yield* readTopic(b.topics.brokers, b.topics.dlqTopic)).toHaveLength(0)
  })
