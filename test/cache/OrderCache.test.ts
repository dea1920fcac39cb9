import { describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Duration, Effect, Layer, Option, TestClock } from "effect"
import { CachedOrder, OrderCache } from "../../src/cache/OrderCache.ts"
import { readFixture } from "../support/fixtures.ts"

const order = (uid: string) => CachedOrder.fromJson(uid, JSON.stringify({ order_uid: uid }))

const withConfig = (entries: ReadonlyArray<readonly [string, string]>) =>
  OrderCache.Default.pipe(Layer.provide(Layer.setConfigProvider(ConfigProvider.fromMap(new Map(entries)))))

describe("CachedOrder", () => {
  it("the ETag is the quoted base64url SHA-256 of the body, whether hashed here or read with it", () => {
    // Computed independently: printf '%s' '{"order_uid":"b563feb7b2b84b6test"}' | openssl sha256 -binary | base64
    const json = '{"order_uid":"b563feb7b2b84b6test"}'
    const digest = "e3vrxQhYnnV0vHe1WkkguNz6fy_zN1G9oulLeHLokzo"
    expect(CachedOrder.fromJson("b563feb7b2b84b6test", json).etag).toBe(`"${digest}"`)
    expect(CachedOrder.fromStored({ uid: "b563feb7b2b84b6test", json, digest })).toStrictEqual(
      CachedOrder.fromJson("b563feb7b2b84b6test", json)
    )
  })

  it("the ETag is stable for the same body and changes with the body", () => {
    const json = readFixture("valid/model.json").toString("utf8")
    const first = CachedOrder.fromJson("b563feb7b2b84b6test", json)
    const again = CachedOrder.fromJson("b563feb7b2b84b6test", json)
    const changed = CachedOrder.fromJson("b563feb7b2b84b6test", json.replace("b563feb7b2b84b6test", "other"))
    expect(again.etag).toBe(first.etag)
    expect(changed.etag).not.toBe(first.etag)
    expect(first.etag).toMatch(/^"[A-Za-z0-9_-]{43}"$/)
  })

  it("the byte size is the body's UTF-8 length, not its string length", () => {
    const bytes = readFixture("valid/multi-item-unicode.json")
    const cached = CachedOrder.fromJson("c7a1e0f2d9b84d3amulti", bytes.toString("utf8"))
    expect(cached.bytes).toBe(bytes.length)
    expect(cached.bytes).toBeGreaterThan(cached.json.length)
  })
})

describe("OrderCache", () => {
  it.effect("a hit serves the stored body and ETag as they were put", () =>
    Effect.gen(function* () {
      const cache = yield* OrderCache
      const stored = CachedOrder.fromJson(
        "c7a1e0f2d9b84d3amulti",
        readFixture("valid/multi-item-unicode.json").toString("utf8")
      )
      expect(yield* cache.put(stored)).toBe(true)
      const hit = yield* cache.get("c7a1e0f2d9b84d3amulti")
      expect(Option.getOrThrow(hit)).toBe(stored)
      expect((yield* cache.stats).bytes).toBe(stored.bytes)
      expect(yield* cache.get("unknown")).toEqual(Option.none())
    }).pipe(Effect.provide(OrderCache.layer({ maxEntries: 10, maxBytes: 1 << 20, ttl: Duration.minutes(1) })))
  )

  it.effect("the warm-up keeps the most recent orders when there are more than the cache holds", () =>
    Effect.gen(function* () {
      const cache = yield* OrderCache
      yield* cache.putAll(["oldest", "older", "recent", "newest"].map(order))
      const kept = yield* Effect.filter(["oldest", "older", "recent", "newest"], (uid) =>
        Effect.map(cache.get(uid), Option.isSome)
      )
      expect(kept).toEqual(["recent", "newest"])
    }).pipe(Effect.provide(OrderCache.layer({ maxEntries: 2, maxBytes: 1 << 20, ttl: Duration.minutes(1) })))
  )

  it.effect("an invalidated order is read again from its source", () =>
    Effect.gen(function* () {
      const cache = yield* OrderCache
      yield* cache.put(order("a"))
      expect(yield* cache.invalidate("a")).toBe(true)
      expect(yield* cache.get("a")).toEqual(Option.none())
    }).pipe(Effect.provide(OrderCache.layer({ maxEntries: 2, maxBytes: 1 << 20, ttl: Duration.minutes(1) })))
  )

  it.effect("the bounds and TTL come from cache.max_entries, cache.max_bytes and cache.ttl", () =>
    Effect.gen(function* () {
      const cache = yield* OrderCache
      const [a, b, c] = [order("a"), order("b"), order("c")]
      yield* cache.putAll([a, b, c])
      expect(yield* cache.size).toBe(2)
      expect(yield* cache.put(CachedOrder.fromJson("big", "x".repeat(1001)))).toBe(false)
      yield* TestClock.adjust("29 seconds")
      expect(Option.isSome(yield* cache.get("c"))).toBe(true)
      yield* TestClock.adjust("1 second")
      expect(yield* cache.get("c")).toEqual(Option.none())
    }).pipe(
      Effect.provide(
        withConfig([
          ["cache.max_entries", "2"],
          ["cache.max_bytes", "1000"],
          ["cache.ttl", "30 seconds"]
        ])
      )
    )
  )

  it.effect("without a cache section the defaults hold: entries live for 10 minutes", () =>
    Effect.gen(function* () {
      const cache = yield* OrderCache
      yield* cache.putAll(Array.from({ length: 1000 }, (_, i) => order(`order-${i}`)))
      expect(yield* cache.size).toBe(1000)
      yield* TestClock.adjust("9 minutes")
      expect(Option.isSome(yield* cache.get("order-0"))).toBe(true)
      yield* TestClock.adjust("1 minute")
      expect(yield* cache.get("order-0")).toEqual(Option.none())
    }).pipe(Effect.provide(withConfig([])))
  )

  it.effect("cache.max_entries 0 turns the cache off", () =>
    Effect.gen(function* () {
      const cache = yield* OrderCache
      expect(yield* cache.put(order("a"))).toBe(false)
      expect(yield* cache.get("a")).toEqual(Option.none())
    }).pipe(Effect.provide(withConfig([["cache.max_entries", "0"]])))
  )

  it.effect("a wrong cache setting fails start-up naming its key", () =>
    Effect.gen(function* () {
      for (const [key, value] of [
        ["cache.max_entries", "-1"],
        ["cache.max_bytes", "lots"],
        ["cache.ttl", "0 seconds"]
      ] as const) {
        const error = yield* Layer.build(withConfig([[key, value]])).pipe(Effect.scoped, Effect.flip)
        expect(String(error)).toContain(key)
      }
    })
  )
})
