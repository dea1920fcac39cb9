import { Config, Duration, Effect, Layer, Option } from "effect"
import { CacheConfig } from "../config/AppConfig.ts"
import * as LruCache from "./LruCache.ts"
import { orderEtag, orderEtagOfDigest } from "../http/Etag.ts"
import type { StoredJson } from "../orders/OrderRepository.ts"

/** An order ready to be served: the encoded body and its validators, so a hit does not re-encode. */
export interface CachedOrder {
  readonly uid: string
  /** The encoded order body. */
  readonly json: string
  /** Strong ETag of `json`, quotes included. */
  readonly etag: string
  /** `Buffer.byteLength(json)`: what the entry counts against the byte bound. */
  readonly bytes: number
}

export const CachedOrder = {
  /** An order just stored: its ETag is hashed here. */
  fromJson: (uid: string, json: string): CachedOrder => ({
    uid,
    json,
    etag: orderEtag(json),
    bytes: Buffer.byteLength(json)
  }),
  /** An order read back with its stored digest: nothing to hash. */
  fromStored: (stored: StoredJson): CachedOrder => ({
    uid: stored.uid,
    json: stored.json,
    etag: orderEtagOfDigest(stored.digest),
    bytes: Buffer.byteLength(stored.json)
  })
}

export interface OrderCacheOptions {
  readonly maxEntries: number
  readonly maxBytes: number
  readonly ttl: Duration.Duration
}

/** `cache.max_entries`, `cache.max_bytes`, `cache.ttl`; `max_entries: 0` turns the cache off. */
export const OrderCacheConfig: Config.Config<OrderCacheOptions> = CacheConfig

const make = (options: OrderCacheOptions) =>
  Effect.gen(function* () {
    const cache = yield* LruCache.make<string, CachedOrder>({
      name: "orders",
      maxEntries: options.maxEntries,
      maxBytes: options.maxBytes,
      ttl: options.ttl
    })
    // No span per call (`Effect.fn`): these run on every cache miss, where a span and the stack
    // trace it captures measured as much as the lookup itself.
    return {
      get: (uid: string): Effect.Effect<Option.Option<CachedOrder>> => cache.get(uid),
      /** `get` without an Effect per call, for the HTTP fast path (see `LruCache.unsafeGet`). */
      unsafeGet: (uid: string, options?: { readonly countMiss?: boolean }): Option.Option<CachedOrder> =>
        cache.unsafeGet(uid, options),
      flushMetrics: cache.flushMetrics,
      put: (order: CachedOrder, ttl?: Duration.DurationInput): Effect.Effect<boolean> =>
        cache.put(order.uid, order, order.bytes, ttl),
      /** Warm-up: pass orders oldest first, so the newest are kept when they exceed a bound. */
      putAll: (orders: Iterable<CachedOrder>): Effect.Effect<void> =>
        cache.putAll(Array.from(orders, (order) => ({ key: order.uid, value: order, size: order.bytes }))),
      invalidate: (uid: string): Effect.Effect<boolean> => cache.invalidate(uid),
      clear: cache.clear,
      stats: cache.stats,
      size: cache.size
    }
  })

export class OrderCache extends Effect.Service<OrderCache>()("OrderCache", {
  effect: Effect.flatMap(OrderCacheConfig, make)
}) {
  /** The cache with the given options instead of the configured ones. */
  static readonly layer = (options: OrderCacheOptions): Layer.Layer<OrderCache> =>
    Layer.effect(
      OrderCache,
      Effect.map(make(options), (service) => OrderCache.make(service))
    )
}
