import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Metric, Option, TestClock } from "effect"
import * as LruCache from "../../src/cache/LruCache.ts"

const make = (options: Partial<LruCache.LruCacheOptions> = {}) =>
  LruCache.make<string, string>({ name: "test", maxEntries: 100, ttl: "10 minutes", ...options })

/**
 * The counters of the cache named `name` in the process's metric registry, which every cache of the
 * process shares: tests compare readings before and after.
 */
const counts = (name: string) => {
  const tagged = <M extends Metric.Metric<any, any, any>>(metric: M): M =>
    Metric.tagged(metric, "cache", name) as M
  const count = (metric: Metric.Metric.Counter<number>) => Effect.map(Metric.value(metric), (s) => s.count)
  const evictions = (reason: LruCache.EvictionReason) =>
    count(Metric.tagged(tagged(LruCache.metrics.evictions), "reason", reason))
  return Effect.all({
    hits: count(tagged(LruCache.metrics.hits)),
    misses: count(tagged(LruCache.metrics.misses)),
    capacity: evictions("capacity"),
    bytes: evictions("bytes"),
    ttl: evictions("ttl")
  })
}

/** Which of `keys` the cache still serves (each lookup counts as a get). */
const present = (cache: LruCache.LruCache<string, string>, keys: ReadonlyArray<string>) =>
  Effect.filter(keys, (key) => Effect.map(cache.get(key), Option.isSome))

describe("LruCache", () => {
  describe("recency", () => {
    it.effect("without gets, the entry put first is the first evicted", () =>
      Effect.gen(function* () {
        const cache = yield* make({ maxEntries: 2 })
        yield* cache.put("a", "A", 1)
        yield* cache.put("b", "B", 1)
        yield* cache.put("c", "C", 1)
        expect(yield* present(cache, ["a", "b", "c"])).toEqual(["b", "c"])
      })
    )

    it.effect("a get refreshes an entry so the least recently used one is evicted", () =>
      Effect.gen(function* () {
        const cache = yield* make({ maxEntries: 2 })
        yield* cache.put("a", "A", 1)
        yield* cache.put("b", "B", 1)
        expect(yield* cache.get("a")).toEqual(Option.some("A"))
        yield* cache.put("c", "C", 1)
        expect(yield* present(cache, ["a", "b", "c"])).toEqual(["a", "c"])
      })
    )

    it.effect("replacing a key updates its value and evicts nothing", () =>
      Effect.gen(function* () {
        const cache = yield* make({ maxEntries: 2 })
        yield* cache.put("a", "A", 1)
        yield* cache.put("b", "B", 1)
        yield* cache.put("a", "A2", 3)
        expect(yield* cache.get("a")).toEqual(Option.some("A2"))
        expect(yield* cache.get("b")).toEqual(Option.some("B"))
        const stats = yield* cache.stats
        expect(stats.evictions).toEqual({ capacity: 0, bytes: 0, ttl: 0 })
        expect(stats.bytes).toBe(4)
      })
    )
  })

  describe("bounds", () => {
    it.effect("the cache never holds more than maxEntries, evicting for capacity", () =>
      Effect.gen(function* () {
        const cache = yield* make({ maxEntries: 3 })
        for (const key of ["1", "2", "3", "4", "5"]) yield* cache.put(key, key, 1)
        expect(yield* cache.size).toBe(3)
        expect(yield* present(cache, ["1", "2", "3", "4", "5"])).toEqual(["3", "4", "5"])
        expect((yield* cache.stats).evictions).toEqual({ capacity: 2, bytes: 0, ttl: 0 })
      })
    )

    it.effect("the byte bound evicts the oldest entries until a new one fits", () =>
      Effect.gen(function* () {
        const cache = yield* make({ maxBytes: 10 })
        yield* cache.put("a", "A", 4)
        yield* cache.put("b", "B", 3)
        yield* cache.put("c", "C", 2)
        // 9 + 8 > 10: "a" goes (13 > 10), then "b" (10 fits).
        expect(yield* cache.put("d", "D", 8)).toBe(true)
        expect(yield* present(cache, ["a", "b", "c", "d"])).toEqual(["c", "d"])
        const stats = yield* cache.stats
        expect(stats.bytes).toBe(10)
        expect(stats.evictions).toEqual({ capacity: 0, bytes: 2, ttl: 0 })
      })
    )

    it.effect("an entry larger than the byte bound is rejected and evicts nothing", () =>
      Effect.gen(function* () {
        const cache = yield* make({ maxBytes: 10 })
        yield* cache.put("a", "A", 4)
        expect(yield* cache.put("big", "BIG", 11)).toBe(false)
        expect(yield* present(cache, ["a", "big"])).toEqual(["a"])
        const stats = yield* cache.stats
        expect(stats.bytes).toBe(4)
        expect(stats.evictions).toEqual({ capacity: 0, bytes: 0, ttl: 0 })
      })
    )

    it.effect("an oversize value put under an existing key drops the older value", () =>
      Effect.gen(function* () {
        const cache = yield* make({ maxBytes: 10 })
        yield* cache.put("a", "old", 4)
        expect(yield* cache.put("a", "new", 11)).toBe(false)
        expect(yield* cache.get("a")).toEqual(Option.none())
        expect((yield* cache.stats).bytes).toBe(0)
      })
    )

    it.effect("an entry exactly the byte bound fits", () =>
      Effect.gen(function* () {
        const cache = yield* make({ maxBytes: 10 })
        yield* cache.put("a", "A", 3)
        expect(yield* cache.put("b", "B", 10)).toBe(true)
        expect(yield* present(cache, ["a", "b"])).toEqual(["b"])
      })
    )
  })

  describe("TTL", () => {
    it.effect("an entry is served before its TTL and gone once it has passed", () =>
      Effect.gen(function* () {
        const cache = yield* make({ ttl: "1 minute" })
        yield* cache.put("a", "A", 1)
        yield* TestClock.adjust("59 seconds")
        expect(yield* cache.get("a")).toEqual(Option.some("A"))
        yield* TestClock.adjust("1 second")
        expect(yield* cache.get("a")).toEqual(Option.none())
        const stats = yield* cache.stats
        expect(stats.evictions.ttl).toBe(1)
        expect(stats.entries).toBe(0)
        expect(stats.bytes).toBe(0)
      })
    )

    it.effect("a per-entry TTL overrides the default, shorter or longer", () =>
      Effect.gen(function* () {
        const cache = yield* make({ ttl: "10 minutes" })
        yield* cache.put("short", "S", 1, "1 second")
        yield* cache.put("default", "D", 1)
        yield* cache.put("long", "L", 1, "1 hour")
        yield* TestClock.adjust("2 seconds")
        expect(yield* present(cache, ["short", "default", "long"])).toEqual(["default", "long"])
        yield* TestClock.adjust("10 minutes")
        expect(yield* present(cache, ["short", "default", "long"])).toEqual(["long"])
      })
    )

    it.effect("a get refreshes recency but does not extend the TTL", () =>
      Effect.gen(function* () {
        const cache = yield* make({ ttl: "1 minute" })
        yield* cache.put("a", "A", 1)
        yield* TestClock.adjust("50 seconds")
        expect(yield* cache.get("a")).toEqual(Option.some("A"))
        yield* TestClock.adjust("10 seconds")
        expect(yield* cache.get("a")).toEqual(Option.none())
      })
    )

    it.effect("a put sweeps expired entries from the least recently used end", () =>
      Effect.gen(function* () {
        const cache = yield* make({ ttl: "1 minute" })
        yield* cache.put("a", "A", 5)
        yield* cache.put("b", "B", 7)
        yield* TestClock.adjust("2 minutes")
        yield* cache.put("c", "C", 1)
        const stats = yield* cache.stats
        expect(stats.entries).toBe(1)
        expect(stats.bytes).toBe(1)
        expect(stats.evictions.ttl).toBe(2)
      })
    )

    it.effect("an entry with a TTL that is not positive is not stored", () =>
      Effect.gen(function* () {
        const cache = yield* make()
        expect(yield* cache.put("a", "A", 1, "0 millis")).toBe(false)
        expect(yield* cache.get("a")).toEqual(Option.none())
      })
    )
  })

  describe("counters", () => {
    it.effect("stats count hits, misses, evictions by reason, entries and bytes", () =>
      Effect.gen(function* () {
        const cache = yield* make({ maxEntries: 2, maxBytes: 10, ttl: "1 minute" })
        yield* cache.put("a", "A", 2)
        yield* cache.put("b", "B", 3)
        yield* cache.get("a") // hit
        yield* cache.get("x") // miss
        yield* cache.put("c", "C", 4) // evicts "b" for capacity
        // A third entry: "a" goes for capacity; then 4 + 7 > 10: "c" goes for bytes.
        yield* cache.put("d", "D", 7, "10 seconds")
        yield* TestClock.adjust("10 seconds")
        yield* cache.get("d") // expired: a miss and a ttl eviction
        yield* cache.put("e", "E", 1)
        yield* cache.get("e") // hit
        expect(yield* cache.stats).toEqual({
          hits: 2,
          misses: 2,
          evictions: { capacity: 2, bytes: 1, ttl: 1 },
          entries: 1,
          bytes: 1
        })
      })
    )

    it.effect("the same counts are published as metrics tagged with the cache name, on flush", () =>
      Effect.gen(function* () {
        const name = "metrics-under-test"
        const counters = counts(name)
        const before = yield* counters
        const cache = yield* make({ name, maxEntries: 1 })
        yield* cache.put("a", "A", 3)
        yield* cache.get("a")
        yield* cache.get("a")
        yield* cache.get("x")
        yield* cache.put("b", "B", 5)
        // Published when the metrics are flushed, as before every scrape.
        yield* cache.flushMetrics

        const after = yield* counters
        expect(after.hits - before.hits).toBe(2)
        expect(after.misses - before.misses).toBe(1)
        expect(after.capacity - before.capacity).toBe(1)
        expect(after.bytes - before.bytes).toBe(0)
        expect(after.ttl - before.ttl).toBe(0)
        // The gauges are the cache's state, not a count.
        const tagged = <M extends Metric.Metric<any, any, any>>(metric: M) =>
          Metric.tagged(metric, "cache", name)
        expect((yield* Metric.value(tagged(LruCache.metrics.entries))).value).toBe(1)
        expect((yield* Metric.value(tagged(LruCache.metrics.bytes))).value).toBe(5)
      })
    )
  })

  describe("the synchronous lookup", () => {
    it.effect(
      "unsafeGet sees the same entries as get, refreshes recency, and its counts reach the metrics on flush",
      () =>
        Effect.gen(function* () {
          const name = "unsafe-under-test"
          const counters = counts(name)
          const cache = yield* make({ name, maxEntries: 2 })
          yield* cache.put("a", "A", 1)
          yield* cache.put("b", "B", 1)
          const before = yield* counters
          expect(cache.unsafeGet("a")).toEqual(Option.some("A"))
          expect(cache.unsafeGet("zz")).toEqual(Option.none())
          yield* cache.flushMetrics
          const after = yield* counters
          expect(after.hits - before.hits).toBe(1)
          expect(after.misses - before.misses).toBe(1)
          expect(yield* cache.stats).toMatchObject({ hits: 1, misses: 1 })
          // "a" was used last, so "b" is the one evicted.
          yield* cache.put("c", "C", 1)
          expect(yield* present(cache, ["a", "b", "c"])).toEqual(["a", "c"])
        })
    )

    it.effect(
      "unsafeGet without counting misses counts its hits, and a miss only once the caller's get counts it",
      () =>
        Effect.gen(function* () {
          const name = "unsafe-uncounted-under-test"
          const counters = counts(name)
          const cache = yield* make({ name, ttl: "1 minute" })
          yield* cache.put("a", "A", 1)
          yield* cache.put("old", "O", 1, "1 second")
          yield* TestClock.adjust("2 seconds")
          const before = yield* counters
          const quiet = { countMiss: false }
          expect(cache.unsafeGet("a", quiet)).toEqual(Option.some("A"))
          expect(cache.unsafeGet("zz", quiet)).toEqual(Option.none())
          // Expired: gone (an eviction), but still not a miss.
          expect(cache.unsafeGet("old", quiet)).toEqual(Option.none())
          yield* cache.flushMetrics
          const after = yield* counters
          expect(after.hits - before.hits).toBe(1)
          expect(after.misses - before.misses).toBe(0)
          expect(after.ttl - before.ttl).toBe(1)
          // The caller answers the miss with get: one miss in all.
          expect(yield* cache.get("zz")).toEqual(Option.none())
          yield* cache.flushMetrics
          expect((yield* counters).misses - before.misses).toBe(1)
          expect(yield* cache.stats).toMatchObject({ hits: 1, misses: 1, entries: 1 })
        })
    )
  })

  describe("maintenance", () => {
    it.effect("invalidate removes one entry and clear removes all, without counting evictions", () =>
      Effect.gen(function* () {
        const cache = yield* make()
        yield* cache.put("a", "A", 1)
        yield* cache.put("b", "B", 2)
        yield* cache.put("c", "C", 3)
        expect(yield* cache.invalidate("b")).toBe(true)
        expect(yield* cache.invalidate("b")).toBe(false)
        expect(yield* present(cache, ["a", "b", "c"])).toEqual(["a", "c"])
        expect((yield* cache.stats).bytes).toBe(4)
        yield* cache.clear
        expect(yield* cache.size).toBe(0)
        const stats = yield* cache.stats
        expect(stats.bytes).toBe(0)
        expect(stats.evictions).toEqual({ capacity: 0, bytes: 0, ttl: 0 })
      })
    )

    it.effect("maxEntries 0 disables the cache: every get misses and puts store nothing", () =>
      Effect.gen(function* () {
        const cache = yield* make({ maxEntries: 0 })
        expect(yield* cache.put("a", "A", 1)).toBe(false)
        yield* cache.putAll([{ key: "b", value: "B", size: 1 }])
        expect(yield* cache.get("a")).toEqual(Option.none())
        expect(yield* cache.get("b")).toEqual(Option.none())
        expect(yield* cache.stats).toEqual({
          hits: 0,
          misses: 2,
          evictions: { capacity: 0, bytes: 0, ttl: 0 },
          entries: 0,
          bytes: 0
        })
      })
    )

    it.effect("invalid options and entry sizes are defects", () =>
      Effect.gen(function* () {
        expect(Exit.isFailure(yield* Effect.exit(make({ maxEntries: -1 })))).toBe(true)
        expect(Exit.isFailure(yield* Effect.exit(make({ maxEntries: 1.5 })))).toBe(true)
        expect(Exit.isFailure(yield* Effect.exit(make({ maxBytes: Number.NaN })))).toBe(true)
        const cache = yield* make()
        expect(Exit.isFailure(yield* Effect.exit(cache.put("a", "A", -1)))).toBe(true)
        expect(Exit.isFailure(yield* Effect.exit(cache.putAll([{ key: "a", value: "A", size: NaN }])))).toBe(
          true
        )
        expect(yield* cache.size).toBe(0)
      })
    )
  })

  describe("warm-up", () => {
    it.effect("putAll over the entry bound keeps the newest entries, given oldest first", () =>
      Effect.gen(function* () {
        const cache = yield* make({ maxEntries: 3 })
        const keys = ["1", "2", "3", "4", "5"]
        yield* cache.putAll(keys.map((key) => ({ key, value: key, size: 1 })))
        expect(yield* present(cache, keys)).toEqual(["3", "4", "5"])
      })
    )

    it.effect("putAll over the byte bound keeps the newest entries that fit", () =>
      Effect.gen(function* () {
        const cache = yield* make({ maxBytes: 10 })
        yield* cache.putAll([
          { key: "old", value: "O", size: 6 },
          { key: "mid", value: "M", size: 5 },
          { key: "new", value: "N", size: 5 }
        ])
        expect(yield* present(cache, ["old", "mid", "new"])).toEqual(["mid", "new"])
        expect((yield* cache.stats).bytes).toBe(10)
      })
    )

    it.effect("entries loaded by putAll honour their own TTL", () =>
      Effect.gen(function* () {
        const cache = yield* make({ ttl: "10 minutes" })
        yield* cache.putAll([
          { key: "a", value: "A", size: 1, ttl: "1 minute" },
          { key: "b", value: "B", size: 1 }
        ])
        yield* TestClock.adjust("1 minute")
        expect(yield* present(cache, ["a", "b"])).toEqual(["b"])
      })
    )
  })
})
