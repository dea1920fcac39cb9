import { Clock, Duration, Effect, Metric, Option, Ref } from "effect"

export interface LruCacheOptions {
  /** Tags every metric of this cache (`cache="<name>"`). */
  readonly name: string
  /** Most entries held at once; `0` disables the cache. */
  readonly maxEntries: number
  /** Most bytes held at once, as the sum of the sizes callers give; unbounded when omitted. */
  readonly maxBytes?: number
  /** Time to live of an entry whose `put` names none. */
  readonly ttl: Duration.DurationInput
}

export interface LruCacheEntry<K, V> {
  readonly key: K
  readonly value: V
  /** Approximate size in bytes, counted against `maxBytes`. */
  readonly size: number
  readonly ttl?: Duration.DurationInput
}

export type EvictionReason = "capacity" | "bytes" | "ttl"

export interface LruCacheStats {
  readonly hits: number
  readonly misses: number
  readonly evictions: { readonly [R in EvictionReason]: number }
  readonly entries: number
  readonly bytes: number
}

export interface LruCache<K, V> {
  /** A hit makes the entry the most recently used one; an expired entry is evicted and reads as a miss. */
  readonly get: (key: K) => Effect.Effect<Option.Option<V>>
  /**
   * `get` as a plain call, on the same state and clock, for a path where running an
   * Effect per call costs too much (the HTTP fast path). With `countMiss: false` a miss is left uncounted, for a caller
   * that answers a miss by going through `get`, which counts it: one lookup, one miss.
   */
  readonly unsafeGet: (key: K, options?: { readonly countMiss?: boolean }) => Option.Option<V>
  /**
   * Bring the metrics (hits, misses, evictions, entries, bytes) up to date with what the
   * operations did since the last flush; call it before a scrape. Operations do not update the
   * metrics themselves: a tagged metric update costs more than the lookup it counts.
   */
  readonly flushMetrics: Effect.Effect<void>
  /**
   * Stores or replaces an entry, evicting least recently used ones until it fits.
   * Succeeds with `false` when the entry cannot be held (larger than `maxBytes`, a TTL that is not positive,
   * or the cache is disabled);
   * any older value under the key is dropped even then, so it is never served in place of the new one.
   */
  readonly put: (key: K, value: V, size: number, ttl?: Duration.DurationInput) => Effect.Effect<boolean>
  /**
   * Stores entries in the order given, in one atomic step: pass them oldest first, so that when they
   * exceed a bound the newest ones are the ones kept.
   */
  readonly putAll: (entries: Iterable<LruCacheEntry<K, V>>) => Effect.Effect<void>
  /** Succeeds with whether an entry was removed. */
  readonly invalidate: (key: K) => Effect.Effect<boolean>
  readonly clear: Effect.Effect<void>
  readonly stats: Effect.Effect<LruCacheStats>
  /** Entries held, counting expired ones not yet swept out. */
  readonly size: Effect.Effect<number>
}

/** Shared by all caches; each cache tags them with `cache=<name>` (and evictions with `reason`). */
export const metrics = {
  hits: Metric.counter("cache_hits_total", { description: "Cache lookups that found a live entry" }),
  misses: Metric.counter("cache_misses_total", { description: "Cache lookups that found no live entry" }),
  evictions: Metric.counter("cache_evictions_total", {
    description: "Entries the cache dropped on its own, by reason (capacity, bytes, ttl)"
  }),
  entries: Metric.gauge("cache_entries", { description: "Entries held by the cache" }),
  bytes: Metric.gauge("cache_bytes", { description: "Approximate bytes held by the cache" })
}

interface Entry<V> {
  readonly value: V
  readonly size: number
  readonly expiresAt: number
}

// The Map is mutated in place (copying it would make every operation O(n)); it is only touched inside
// `Ref.modify`, whose function runs to completion without yielding, so each operation is atomic —
// or by `unsafeGet`, a synchronous call on the same state object, atomic for the same reason.
// Its insertion order is the recency order: first = least recently used.
interface State<K, V> {
  readonly entries: Map<K, Entry<V>>
  bytes: number
  hits: number
  misses: number
  readonly evictions: Record<EvictionReason, number>
}

/** What one operation changed, reported to the metrics once the state update is done. */
interface Delta {
  hits: number
  misses: number
  readonly evictions: Record<EvictionReason, number>
  changed: boolean
}

const newDelta = (): Delta => ({
  hits: 0,
  misses: 0,
  evictions: { capacity: 0, bytes: 0, ttl: 0 },
  changed: false
})

const isSize = (n: number) => Number.isFinite(n) && n >= 0

export const make = <K, V>(options: LruCacheOptions): Effect.Effect<LruCache<K, V>> =>
  Effect.suspend(() => {
    const maxEntries = options.maxEntries
    const maxBytes = options.maxBytes ?? Number.POSITIVE_INFINITY
    if (!Number.isInteger(maxEntries) || maxEntries < 0) {
      return Effect.dieMessage(`LruCache "${options.name}": maxEntries must be a non-negative integer`)
    }
    if (Number.isNaN(maxBytes) || maxBytes < 0) {
      return Effect.dieMessage(`LruCache "${options.name}": maxBytes must be a non-negative number`)
    }
    const defaultTtl = Duration.decode(options.ttl)

    const tagged = <M extends Metric.Metric<any, any, any>>(metric: M): M =>
      Metric.tagged(metric, "cache", options.name) as M
    const hits = tagged(metrics.hits)
    const misses = tagged(metrics.misses)
    const evictions: Record<EvictionReason, Metric.Metric.Counter<number>> = {
      capacity: Metric.tagged(tagged(metrics.evictions), "reason", "capacity"),
      bytes: Metric.tagged(tagged(metrics.evictions), "reason", "bytes"),
      ttl: Metric.tagged(tagged(metrics.evictions), "reason", "ttl")
    }
    const entriesGauge = tagged(metrics.entries)
    const bytesGauge = tagged(metrics.bytes)

    const ttlMillis = (ttl: Duration.DurationInput | undefined) =>
      Duration.toMillis(ttl === undefined ? defaultTtl : Duration.decode(ttl))

    const remove = (state: State<K, V>, key: K, entry: Entry<V>, delta: Delta) => {
      state.entries.delete(key)
      state.bytes -= entry.size
      delta.changed = true
    }

    const evict = (state: State<K, V>, key: K, entry: Entry<V>, reason: EvictionReason, delta: Delta) => {
      remove(state, key, entry, delta)
      state.evictions[reason]++
      delta.evictions[reason]++
    }

    // Only the least recently used end is swept, stopping at the first live entry: each entry is swept
    // at most once, so a put stays O(1) amortised. Expired entries further in go on get or by LRU order.
    const sweepExpired = (state: State<K, V>, now: number, delta: Delta) => {
      for (const [key, entry] of state.entries) {
        if (entry.expiresAt > now) return
        evict(state, key, entry, "ttl", delta)
      }
    }

    const insert = (state: State<K, V>, now: number, input: LruCacheEntry<K, V>, delta: Delta): boolean => {
      const previous = state.entries.get(input.key)
      if (previous !== undefined) remove(state, input.key, previous, delta)
      const expiresAt = now + ttlMillis(input.ttl)
      if (maxEntries === 0 || input.size > maxBytes || expiresAt <= now) return false
      while (state.entries.size >= maxEntries || state.bytes + input.size > maxBytes) {
        const oldest = state.entries.entries().next()
        if (oldest.done) break
        const [key, entry] = oldest.value
        const reason: EvictionReason =
          entry.expiresAt <= now ? "ttl" : state.entries.size >= maxEntries ? "capacity" : "bytes"
        evict(state, key, entry, reason, delta)
      }
      // An empty cache holds no bytes; resetting guards against drift from fractional sizes.
      if (state.entries.size === 0) state.bytes = 0
      state.entries.set(input.key, { value: input.value, size: input.size, expiresAt })
      state.bytes += input.size
      delta.changed = true
      return true
    }

    // The gauges are set from the state as it is at the flush; `stats` is always exact.
    const report = (state: State<K, V>, delta: Delta): Effect.Effect<void> => {
      const updates: Array<Effect.Effect<void>> = []
      if (delta.hits > 0) updates.push(Metric.incrementBy(hits, delta.hits))
      if (delta.misses > 0) updates.push(Metric.incrementBy(misses, delta.misses))
      for (const reason of ["capacity", "bytes", "ttl"] as const) {
        if (delta.evictions[reason] > 0)
          updates.push(Metric.incrementBy(evictions[reason], delta.evictions[reason]))
      }
      if (delta.changed) {
        updates.push(Metric.set(entriesGauge, state.entries.size), Metric.set(bytesGauge, state.bytes))
      }
      return updates.length === 0 ? Effect.void : Effect.all(updates, { discard: true })
    }

    return Effect.gen(function* () {
      const state: State<K, V> = {
        entries: new Map(),
        bytes: 0,
        hits: 0,
        misses: 0,
        evictions: { capacity: 0, bytes: 0, ttl: 0 }
      }
      const ref = yield* Ref.make(state)
      // The clock the cache was made with, so the synchronous path keeps the same time as the rest.
      const clock = yield* Effect.clock
      /**
       * What the operations changed since the metrics were last told. The metrics are brought up
       * to date by `flushMetrics` (before every scrape), not per operation: a tagged metric update
       * costs more than the lookup it counts.
       */
      let pending = newDelta()

      /** Runs `f` atomically on the state at the current Clock time. */
      const update = <A>(f: (state: State<K, V>, now: number, delta: Delta) => A): Effect.Effect<A> =>
        Effect.flatMap(Clock.currentTimeMillis, (now) =>
          Ref.modify(ref, (state): [A, State<K, V>] => [f(state, now, pending), state])
        )

      const lookup = (
        state: State<K, V>,
        key: K,
        now: number,
        delta: Delta,
        countMiss = true
      ): Option.Option<V> => {
        const entry = state.entries.get(key)
        if (entry !== undefined && entry.expiresAt <= now) evict(state, key, entry, "ttl", delta)
        if (entry === undefined || entry.expiresAt <= now) {
          if (countMiss) {
            state.misses++
            delta.misses++
          }
          return Option.none()
        }
        // Re-inserting moves the key to the most recently used end.
        state.entries.delete(key)
        state.entries.set(key, entry)
        state.hits++
        delta.hits++
        return Option.some(entry.value)
      }

      const get = (key: K) => update((state, now, delta) => lookup(state, key, now, delta))

      const unsafeGet = (key: K, options?: { readonly countMiss?: boolean }): Option.Option<V> =>
        lookup(state, key, clock.unsafeCurrentTimeMillis(), pending, options?.countMiss ?? true)

      const flushMetrics = Effect.suspend(() => {
        const delta = pending
        pending = newDelta()
        return report(state, delta)
      })

      const invalidSize = (size: number) =>
        Effect.dieMessage(
          `LruCache "${options.name}": an entry size must be a non-negative number, got ${size}`
        )

      const put = (key: K, value: V, size: number, ttl?: Duration.DurationInput) =>
        isSize(size)
          ? update((state, now, delta) => {
              sweepExpired(state, now, delta)
              return insert(
                state,
                now,
                ttl === undefined ? { key, value, size } : { key, value, size, ttl },
                delta
              )
            })
          : invalidSize(size)

      const putAll = (entries: Iterable<LruCacheEntry<K, V>>) =>
        Effect.suspend(() => {
          const all = Array.from(entries)
          const bad = all.find((entry) => !isSize(entry.size))
          if (bad !== undefined) return invalidSize(bad.size)
          return update((state, now, delta) => {
            sweepExpired(state, now, delta)
            for (const entry of all) insert(state, now, entry, delta)
          })
        })

      const invalidate = (key: K) =>
        update((state, _now, delta) => {
          const entry = state.entries.get(key)
          if (entry === undefined) return false
          remove(state, key, entry, delta)
          return true
        })

      const clear = update((state, _now, delta) => {
        state.entries.clear()
        state.bytes = 0
        delta.changed = true
      })

      // Copied out: the state object itself keeps changing.
      const stats = Effect.map(Ref.get(ref), (state): LruCacheStats => ({
        hits: state.hits,
        misses: state.misses,
        evictions: { ...state.evictions },
        entries: state.entries.size,
        bytes: state.bytes
      }))

      const size = Effect.map(Ref.get(ref), (state) => state.entries.size)

      const cache: LruCache<K, V> = {
        get,
        unsafeGet,
        flushMetrics,
        put,
        putAll,
        invalidate,
        clear,
        stats,
        size
      }
      return cache
    })
  })
