import { createHash } from "node:crypto"
import { describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Duration, Effect, Either, type Exit, Fiber, Layer, Option, Schema } from "effect"
import { OrderCache } from "../../src/cache/OrderCache.ts"
import { ClientReads } from "../../src/db/ClientReads.ts"
import { Order, type OrderJson } from "../../src/orders/Order.ts"
import { orderToJsonString } from "../../src/orders/OrderDecoder.ts"
import { OrderRepository, type SearchQuery } from "../../src/orders/OrderRepository.ts"
import { Orders } from "../../src/orders/Orders.ts"
import { readFixtureJson } from "../support/fixtures.ts"

const model = Schema.decodeUnknownSync(Order)(readFixtureJson("valid/model.json") as OrderJson)

const json = orderToJsonString(model)
const stored = {
  uid: model.order_uid,
  json,
  digest: createHash("sha256").update(json).digest("base64url")
}

/** A repository that knows one order and counts its reads; each read takes a while. */
const countingRepository = (reads: { count: number }) =>
  Layer.succeed(
    OrderRepository,
    OrderRepository.make({
      findJsonByUids: (uids: ReadonlyArray<string>) =>
        Effect.sync(() => reads.count++).pipe(
          Effect.zipRight(Effect.sleep("50 millis")),
          Effect.as(new Map(uids.includes(model.order_uid) ? [[model.order_uid, stored]] : []))
        ),
      mostRecentJson: () => Effect.succeed([stored]),
      insertBatch: () => Effect.die("not used"),
      listRecent: () => Effect.die("not used"),
      count: Effect.succeed(1),
      ping: Effect.void
    } as any)
  )

const withOrders = (reads: { count: number }) =>
  Orders.Default.pipe(
    Layer.provideMerge(OrderCache.layer({ maxEntries: 100, maxBytes: 1_000_000, ttl: Duration.minutes(1) })),
    Layer.provide([countingRepository(reads), ClientReads.Default])
  )

/** A repository whose every read takes a while, noting how many run at once. */
const slowRepository = (running: { now: number; most: number; done: number; searches?: Array<string> }) => {
  const read = <A>(value: A) =>
    Effect.acquireUseRelease(
      Effect.sync(() => {
        running.now++
        running.most = Math.max(running.most, running.now)
      }),
      () => Effect.as(Effect.sleep("20 millis"), value),
      () =>
        Effect.sync(() => {
          running.now--
          running.done++
        })
    )
  return Layer.succeed(
    OrderRepository,
    OrderRepository.make({
      findJsonByUids: () => read(new Map()),
      search: () => read({ items: [], nextCursor: Option.none() }),
      unsafeSearch: (query: { q: Option.Option<string> }, done: (exit: Exit.Exit<unknown>) => void) => {
        running.searches?.push(Option.getOrElse(query.q, () => ""))
        Effect.runCallback(read({ items: [], nextCursor: Option.none() }), { onExit: done })
      },
      unsafeSearchByKeys: (
        queries: ReadonlyArray<{ q: Option.Option<string> }>,
        done: (exit: Exit.Exit<unknown>) => void
      ) => {
        running.searches?.push(...queries.map((query) => Option.getOrElse(query.q, () => "")))
        Effect.runCallback(read(queries.map(() => Either.right({ items: [], nextCursor: Option.none() }))), {
          onExit: done
        })
      },
      listRecent: () => read({ items: [], nextCursor: Option.none() })
    } as any)
  )
}

/** A first page of orders matching `q`. */
const byKey = (q: string): SearchQuery => ({
  q: Option.some(q),
  from: Option.none(),
  to: Option.none(),
  limit: 20,
  cursor: Option.none()
})

describe("Orders", () => {
  it.live("concurrent misses for the same uid read the database once, and later reads hit the cache", () => {
    const reads = { count: 0 }
    return Effect.gen(function* () {
      const orders = yield* Orders
      const results = yield* Effect.all(
        Array.from({ length: 20 }, () => orders.get(model.order_uid)),
        { concurrency: "unbounded" }
      )
      expect(results.every((r) => Option.isSome(r) && r.value.json === orderToJsonString(model))).toBe(true)
      expect(reads.count).toBe(1)
      yield* orders.get(model.order_uid)
      expect(reads.count).toBe(1)
    }).pipe(Effect.provide(withOrders(reads)))
  })

  it.live("an unknown uid is none and is asked of the database each time (no negative caching)", () => {
    const reads = { count: 0 }
    return Effect.gen(function* () {
      const orders = yield* Orders
      expect(Option.isNone(yield* orders.get("unknown"))).toBe(true)
      expect(Option.isNone(yield* orders.get("unknown"))).toBe(true)
      expect(reads.count).toBe(2)
    }).pipe(Effect.provide(withOrders(reads)))
  })

  it.live("reads for clients hold at most pool_max − 2 connections at once, however many ask", () => {
    const running = { now: 0, most: 0, done: 0, searches: [] as Array<string> }
    return Effect.gen(function* () {
      const orders = yield* Orders
      // Misses of distinct uids, searches and pages, all at once: 60 asked for, at most 3 running.
      // Misses and searches go in batches; each page is a read of its own.
      yield* Effect.all(
        Array.from({ length: 20 }, (_, i) => [
          orders.get(`uid-${i}`),
          orders.search(byKey(`key-${i}`)),
          orders.listRecent(10, Option.none())
        ]).flat(),
        { concurrency: "unbounded", discard: true }
      )
      expect(running.most).toBe(3)
      expect(running.done).toBeGreaterThanOrEqual(22)
      expect(running.searches.toSorted()).toEqual(Array.from({ length: 20 }, (_, i) => `key-${i}`).toSorted())
    }).pipe(
      Effect.provide(
        Orders.Default.pipe(
          Layer.provide([
            OrderCache.layer({ maxEntries: 100, maxBytes: 1_000_000, ttl: Duration.minutes(1) }),
            slowRepository(running),
            ClientReads.Default
          ]),
          Layer.provide(Layer.setConfigProvider(ConfigProvider.fromJson({ database: { pool_max: 5 } })))
        )
      )
    )
  })

  it.live("a search whose caller leaves the line before its turn never runs; the next one does", () => {
    const running = { now: 0, most: 0, done: 0, searches: [] as Array<string> }
    return Effect.gen(function* () {
      const orders = yield* Orders
      const search = byKey
      // pool_max 3: one permit, held by the first search for 20 ms.
      const first = yield* Effect.fork(orders.search(search("first")))
      yield* Effect.sleep("5 millis")
      const answered: Array<string> = []
      const leave = orders.unsafeSearch(search("gone"), () => answered.push("gone"))
      orders.unsafeSearch(search("next"), () => answered.push("next"))
      expect(leave()).toBe(true)
      yield* Fiber.join(first)
      yield* Effect.sleep("40 millis")
      expect(running.searches).toEqual(["first", "next"])
      expect(answered).toEqual(["next"])
    }).pipe(
      Effect.provide(
        Orders.Default.pipe(
          Layer.provide([
            OrderCache.layer({ maxEntries: 100, maxBytes: 1_000_000, ttl: Duration.minutes(1) }),
            slowRepository(running),
            ClientReads.Default
          ]),
          Layer.provide(Layer.setConfigProvider(ConfigProvider.fromJson({ database: { pool_max: 3 } })))
        )
      )
    )
  })

  it.live("warm-up fills the cache from the most recent orders and marks the service warm", () => {
    const reads = { count: 0 }
    return Effect.gen(function* () {
      const orders = yield* Orders
      expect(yield* orders.isWarm).toBe(false)
      yield* orders.warm
      expect(yield* orders.isWarm).toBe(true)
      yield* orders.get(model.order_uid)
      expect(reads.count).toBe(0)
    }).pipe(Effect.provide(withOrders(reads)))
  })
})
