/**
 * The order service: reads go cache → database → cache; concurrent misses for the same uid share
 * one database read. Warm-up loads the most recent orders into the cache at start-up.
 */
import type { SqlError } from "@effect/sql/SqlError"
import { Deferred, Effect, FiberId, Option, Ref } from "effect"
import { CachedOrder, OrderCache } from "../cache/OrderCache.ts"
import { CacheConfig } from "../config/AppConfig.ts"
import { OrderRepository } from "./OrderRepository.ts"

export class Orders extends Effect.Service<Orders>()("Orders", {
  effect: Effect.gen(function* () {
    const repository = yield* OrderRepository
    const cache = yield* OrderCache
    const inFlight = new Map<string, Deferred.Deferred<Option.Option<CachedOrder>, SqlError>>()
    const warmed = yield* Ref.make(false)

    const load = (uid: string) =>
      repository
        .findJsonByUid(uid)
        .pipe(
          Effect.map(Option.map(CachedOrder.fromStored)),
          Effect.tap(Option.match({ onNone: () => Effect.void, onSome: (c) => cache.put(c) }))
        )

    /** One database read per uid at a time: later callers wait for the first one's result. */
    const loadOnce = (uid: string) =>
      Effect.suspend(() => {
        const pending = inFlight.get(uid)
        if (pending !== undefined) return Deferred.await(pending)
        const deferred = Deferred.unsafeMake<Option.Option<CachedOrder>, SqlError>(FiberId.none)
        inFlight.set(uid, deferred)
        return load(uid).pipe(
          Effect.onExit((exit) => {
            inFlight.delete(uid)
            return Deferred.done(deferred, exit)
          })
        )
      })

    const get = (uid: string) =>
      Effect.flatMap(cache.get(uid), (hit) => (Option.isSome(hit) ? Effect.succeed(hit) : loadOnce(uid)))

    const warm = Effect.gen(function* () {
      const { warmCount, maxEntries } = yield* CacheConfig
      const count = Math.min(warmCount, maxEntries)
      if (count > 0) {
        const started = Date.now()
        const recent = yield* repository.mostRecentJson(count)
        yield* cache.putAll(recent.map(CachedOrder.fromStored))
        yield* Effect.logInfo("Cache warmed").pipe(
          Effect.annotateLogs({ orders: recent.length, ms: Date.now() - started })
        )
      }
      yield* Ref.set(warmed, true)
    }).pipe(Effect.withSpan("Orders.warm"))

    return {
      /** The order, ready to serve, if it is stored. */
      get,
      listRecent: repository.listRecent,
      search: repository.search,
      warm,
      isWarm: Ref.get(warmed)
    } as const
  })
}) {}
