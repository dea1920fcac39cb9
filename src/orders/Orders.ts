/**
 * The order service: reads go cache → database → cache. Cache misses are read from the database
 * in batches (`ReadBatcher`): those asked for at about the same time share one statement, and
 * concurrent misses for the same uid share one read. Searches by key are batched the same way.
 * Warm-up loads the most recent orders into the cache at start-up.
 */
import type { SqlError } from "@effect/sql/SqlError"
import { Effect, Either, Exit, Option, Ref } from "effect"
import { CachedOrder, OrderCache } from "../cache/OrderCache.ts"
import { CacheConfig } from "../config/AppConfig.ts"
import { ClientReads, type ReadQueueFull } from "../db/ClientReads.ts"
import {
  type InvalidCursor,
  OrderRepository,
  type RecentOrders,
  type SearchQuery
} from "./OrderRepository.ts"
import * as ReadBatcher from "./ReadBatcher.ts"

/** Uids read in one statement at most: one index lookup each, a few hundred kilobytes of rows. */
const MAX_BATCH = 200

/**
 * Searches by `q` in one statement at most. Measured with 1,000,000 orders, 50 callers and 8
 * connections: alone, a search cost PostgreSQL ~270 µs; in batches of up to 4, 250; 8, 180; 16,
 * 110; 32, 95. A page is at most 101 rows, so a batch reads at most 3,232 (and more only for keys
 * that many orders share, as single searches would).
 */
const MAX_SEARCH_BATCH = 32

/**
 * Statements of searches by `q` at once at most. Two keep the benchmark machine's two cores busy;
 * with more, the statements took turns on the CPU and a search's p99 grew (docs/perf-notes/), while
 * batches stayed smaller. The rest of the client reads' connections stay free for cache misses and
 * pages, however many searches wait.
 */
const SEARCH_STATEMENTS = 2

/** A search as a key of the batcher: equal searches, equal keys. */
const keyOfQuery = (query: SearchQuery): string =>
  JSON.stringify([
    Option.getOrNull(query.q),
    Option.getOrNull(query.from),
    Option.getOrNull(query.to),
    Option.getOrNull(query.cursor),
    query.limit
  ])

const queryOfKey = (key: string): SearchQuery => {
  const [q, from, to, cursor, limit] = JSON.parse(key) as [
    string | null,
    string | null,
    string | null,
    string | null,
    number
  ]
  return {
    q: Option.fromNullable(q),
    from: Option.fromNullable(from),
    to: Option.fromNullable(to),
    cursor: Option.fromNullable(cursor),
    limit
  }
}

export class Orders extends Effect.Service<Orders>()("Orders", {
  effect: Effect.gen(function* () {
    const repository = yield* OrderRepository
    const cache = yield* OrderCache
    const warmed = yield* Ref.make(false)
    // Every read made for a client holds one of these while it runs, so ingestion keeps its
    // connections (see ClientReads).
    const reads = yield* ClientReads

    const misses = yield* ReadBatcher.make({
      read: (uids: ReadonlyArray<string>) =>
        repository.findJsonByUids(uids).pipe(
          Effect.map(
            (found) => new Map(Array.from(found, ([uid, stored]) => [uid, CachedOrder.fromStored(stored)]))
          ),
          // The batch's orders enter the cache in one atomic step.
          Effect.tap((orders) => cache.putAll(orders.values()))
        ),
      maxBatch: MAX_BATCH,
      permits: reads
    })

    // Searches by `q` asked for at about the same time share one statement too; the same search
    // asked twice at once is run once. Keyed by the query's text, as the batcher keys by value.
    const byKeys = yield* ReadBatcher.make({
      read: (keys: ReadonlyArray<string>) =>
        Effect.map(
          repository.searchByKeys(keys.map(queryOfKey)),
          (pages) => new Map(keys.map((key, i) => [key, pages[i]!]))
        ),
      maxBatch: MAX_SEARCH_BATCH,
      permits: reads,
      maxInFlight: SEARCH_STATEMENTS
    })

    /**
     * The order, ready to serve, if it is stored: `done` is called once, at once on a cache hit,
     * else when the database has answered. A callback, not an Effect: the order fast path answers
     * a miss from it without a fiber (see `ReadBatcher`).
     */
    const unsafeGet = (
      uid: string,
      done: (exit: Exit.Exit<Option.Option<CachedOrder>, SqlError | ReadQueueFull>) => void
    ): void => {
      const hit = cache.unsafeGet(uid)
      if (Option.isSome(hit)) done(Exit.succeed(hit))
      else misses.load(uid, done)
    }

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

    /** A search by `q`, from its batch; interrupted while it waits for one, it leaves the line. */
    const searchByKey = (query: SearchQuery) =>
      Effect.async<RecentOrders, InvalidCursor | SqlError | ReadQueueFull>((resume) => {
        const leave = byKeys.load(keyOfQuery(query), (exit) => {
          if (Exit.isFailure(exit)) return resume(Exit.failCause(exit.cause))
          if (Option.isNone(exit.value))
            return resume(Exit.die("a search by keys came back without its page"))
          resume(Either.match(exit.value.value, { onLeft: Exit.fail, onRight: Exit.succeed }))
        })
        return Effect.sync(leave)
      })

    /**
     * Orders matching `query`, a page at a time. With the line of reads full it fails at once
     * with `ReadQueueFull`; interrupted while it still waits for a connection (its client has
     * gone), it leaves the line and never runs.
     */
    const search = (
      query: SearchQuery
    ): Effect.Effect<RecentOrders, InvalidCursor | SqlError | ReadQueueFull> =>
      Option.isSome(query.q) ? searchByKey(query) : reads.run(repository.searchByDates(query))

    return {
      unsafeGet,
      listRecent: (limit: number, cursor: Option.Option<string>) =>
        reads.run(repository.listRecent(limit, cursor)),
      search,
      warm,
      isWarm: Ref.get(warmed)
    } as const
  })
}) {}
