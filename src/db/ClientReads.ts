/**
 * The share of the connection pool that reads for HTTP clients may hold at once: cache misses,
 * searches, pages of recent orders and of dead letters. It is `database.pool_max` less two, so
 * that ingestion always finds a connection, however many clients ask and however long their
 * statements run (a search for a key that thousands of orders share reads all of them).
 */
import { Effect } from "effect"
import { DatabaseConfig } from "../config/AppConfig.ts"

/** Connections of the pool that reads for clients never hold. */
export const CONNECTIONS_KEPT = 2

export class ClientReads extends Effect.Service<ClientReads>()("ClientReads", {
  effect: Effect.gen(function* () {
    const { poolMax } = yield* DatabaseConfig
    const permits = Math.max(1, poolMax - CONNECTIONS_KEPT)
    const semaphore = yield* Effect.makeSemaphore(permits)
    return {
      /** How many reads may run at once. */
      permits,
      /** Runs `read` once fewer than `permits` reads are running; one statement per call. */
      run: <A, E, R>(read: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> => semaphore.withPermits(1)(read)
    } as const
  })
}) {}
