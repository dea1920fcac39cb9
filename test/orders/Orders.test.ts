import { createHash } from "node:crypto"
import { describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Deferred, Duration, Effect, Either, Fiber, Layer, Option, Schema } from "effect"
import { type CachedOrder, OrderCache } from "../../src/cache/OrderCache.ts"
import { ClientReads } from "../../src/db/ClientReads.ts"
import { Order, type OrderJson } from "../../src/orders/Order.ts"
import { orderToJsonString } from "../../src/orders/OrderDecoder.ts"
import { OrderRepository, type SearchQuery } from "../../src/orders/OrderRepository.ts"
import { Orders } from "../../src/orders/Orders.ts"
import { readFixtureJson } from "../support/fixtures.ts"
import { waitUntil } from "../support/sse.ts"

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

/**
 * A repository whose every read takes a while (or, given `gate`, until it opens), noting how many
 * run at once and which searches it ran.
 */
const slowRepository = (
  running: { now: number; most: number; done: number; searches?: Array<string> },
  gate?: Deferred.Deferred<void>
) => {
  const read = <A>(value: A) =>
    Effect.acquireUseRelease(
      Effect.sync(() => {
        running.now++
        running.most = Math.max(running.most, running.now)
      }),
      () => Effect.as(gate === undefined ? Effect.sleep("20 millis") : Deferred.await(gate), value),
      () =>
        Effect.sync(() => {
          running.now--
          running.done++
        })
    )
  const noOrders = { items: [], nextCursor: Option.none() }
  return Layer.succeed(
    OrderRepository,
    OrderRepository.make({
      findJsonByUids: () => read(new Map()),
      searchByKeys: (queries: ReadonlyArray<{ q: Option.Option<string> }>) =>
        Effect.suspend(() => {
          running.searches?.push(...queries.map((query) => Option.getOrElse(query.q, () => "")))
          return read(queries.map(() => Either.right(noOrders)))
        }),
      searchByDates: () => read(noOrders),
      listRecent: () => read(noOrders)
    } as any)
  )
}

/** The order's read through `Orders.unsafeGet`, as an Effect. */
const get = (orders: Orders, uid: string) =>
  Effect.async<Option.Option<CachedOrder>, unknown>((resume) => orders.unsafeGet(uid, resume))

/** `Orders` on `repository`, with its `ClientReads` (pool_max − 2 permits) to look at. */
const ordersOn = (repository: Layer.Layer<OrderRepository>, poolMax: number) =>
  Orders.Default.pipe(
    Layer.provideMerge(
      Layer.mergeAll(
        OrderCache.layer({ maxEntries: 100, maxBytes: 1_000_000, ttl: Duration.minutes(1) }),
        repository,
        ClientReads.Default
      )
    ),
    Layer.provide(Layer.setConfigProvider(ConfigProvider.fromJson({ database: { pool_max: poolMax } })))
  )

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
        Array.from({ length: 20 }, () => get(orders, model.order_uid)),
        { concurrency: "unbounded" }
      )
      expect(results.every((r) => Option.isSome(r) && r.value.json === orderToJsonString(model))).toBe(true)
      expect(reads.count).toBe(1)
      yield* get(orders, model.order_uid)
      expect(reads.count).toBe(1)
    }).pipe(Effect.provide(withOrders(reads)))
  })

  it.live("an unknown uid is none and is asked of the database each time (no negative caching)", () => {
    const reads = { count: 0 }
    return Effect.gen(function* () {
      const orders = yield* Orders
      expect(Option.isNone(yield* get(orders, "unknown"))).toBe(true)
      expect(Option.isNone(yield* get(orders, "unknown"))).toBe(true)
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
          get(orders, `uid-${i}`),
          orders.search(byKey(`key-${i}`)),
          orders.listRecent(10, Option.none())
        ]).flat(),
        { concurrency: "unbounded", discard: true }
      )
      expect(running.most).toBe(3)
      expect(running.done).toBeGreaterThanOrEqual(22)
      expect(running.searches.toSorted()).toEqual(Array.from({ length: 20 }, (_, i) => `key-${i}`).toSorted())
    }).pipe(Effect.provide(ordersOn(slowRepository(running), 5)))
  })

  it.live(
    "a search interrupted in line before its turn (its client went) never runs; the next one does",
    () => {
      const running = { now: 0, most: 0, done: 0, searches: [] as Array<string> }
      return Effect.gen(function* () {
        const gate = yield* Deferred.make<void>()
        return yield* Effect.gen(function* () {
          const orders = yield* Orders
          const reads = yield* ClientReads
          // pool_max 3: one permit, held by the first search until the gate opens.
          const first = yield* Effect.fork(orders.search(byKey("first")))
          yield* waitUntil("the first search runs", () => running.now === 1)
          const gone = yield* Effect.fork(orders.search(byKey("gone")))
          const next = yield* Effect.fork(orders.search(byKey("next")))
          yield* waitUntil("two searches in line", () => reads.line.size() === 2)
          yield* Fiber.interrupt(gone)
          expect(reads.line.size()).toBe(1)
          yield* Deferred.succeed(gate, undefined)
          yield* Fiber.join(first)
          yield* Fiber.join(next)
          expect(running.searches).toEqual(["first", "next"])
          expect(reads.line.size()).toBe(0)
        }).pipe(Effect.provide(ordersOn(slowRepository(running, gate), 3)))
      })
    }
  )

  it.live("a search by dates interrupted in line never runs either, and leaves its place", () => {
    const running = { now: 0, most: 0, done: 0 }
    return Effect.gen(function* () {
      const gate = yield* Deferred.make<void>()
      return yield* Effect.gen(function* () {
        const orders = yield* Orders
        const reads = yield* ClientReads
        const byDates = { ...byKey(""), q: Option.none(), from: Option.some("2024-01-01T00:00:00Z") }
        const first = yield* Effect.fork(orders.search(byDates))
        yield* waitUntil("the first search runs", () => running.now === 1)
        const gone = yield* Effect.fork(orders.search(byDates))
        yield* waitUntil("a search in line", () => reads.line.size() === 1)
        yield* Fiber.interrupt(gone)
        expect(reads.line.size()).toBe(0)
        yield* Deferred.succeed(gate, undefined)
        yield* Fiber.join(first)
        // The permit came back: another search runs at once.
        yield* orders.search(byDates)
        expect(running.done).toBe(2)
      }).pipe(Effect.provide(ordersOn(slowRepository(running, gate), 3)))
    })
  })

  it.live("warm-up fills the cache from the most recent orders and marks the service warm", () => {
    const reads = { count: 0 }
    return Effect.gen(function* () {
      const orders = yield* Orders
      expect(yield* orders.isWarm).toBe(false)
      yield* orders.warm
      expect(yield* orders.isWarm).toBe(true)
      yield* get(orders, model.order_uid)
      expect(reads.count).toBe(0)
    }).pipe(Effect.provide(withOrders(reads)))
  })
})
