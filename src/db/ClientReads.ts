/**
 * The share of the connection pool that reads for HTTP clients may hold at once: cache misses,
 * searches, pages of recent orders and of dead letters. It is `database.pool_max` less two, so
 * that ingestion always finds a connection, however many clients ask and however long their
 * statements run (a search for a key that thousands of orders share reads all of them).
 */
import { Effect } from "effect"
import { DatabaseConfig } from "../config/AppConfig.ts"

/** Connections of the pool that reads for clients never hold. */
const CONNECTIONS_KEPT = 2

export interface Permits {
  /** How many may run at once. */
  readonly permits: number
  /** Runs `effect` holding a permit, once one is free; waiters are served first come, first served. */
  readonly run: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  /**
   * `run` without an Effect: calls `granted` once a permit is free (at once if one is), and the
   * caller then holds it until it calls `release`, once. Returns `leave`: before the grant it takes
   * the caller out of the line and returns true (`granted` is never called); after it, false.
   */
  readonly unsafeAcquire: (granted: () => void) => () => boolean
  readonly release: () => void
}

/**
 * Permits handed over one at a time, in arrival order. Not `Effect.Semaphore`: in Effect 3 a
 * release wakes every waiting fiber to try again, and with 50 searches waiting for 8 permits that
 * cost more than the search itself (measured: 330 → 570 µs of the service's CPU a search). Here a
 * release hands its permit straight to the longest waiter, or puts it back.
 */
export const makePermits = (permits: number): Permits => {
  let free = permits
  // Insertion order is arrival order; a waiter that gives up is deleted in O(1).
  const waiting = new Set<() => void>()

  const release = () => {
    const next = waiting.values().next()
    if (next.done) free++
    else {
      waiting.delete(next.value)
      next.value()
    }
  }

  const unsafeAcquire = (granted: () => void) => {
    if (free > 0) {
      free--
      granted()
      return () => false
    }
    // A function of its own, so that the same `granted` may wait twice and leave once.
    const grant = () => granted()
    waiting.add(grant)
    return () => waiting.delete(grant)
  }

  const acquire = Effect.async<void>((resume) => {
    let granted = false
    const leave = unsafeAcquire(() => {
      granted = true
      resume(Effect.void)
    })
    // Interrupted while waiting: leave the line, or, if a permit was handed over at the same
    // moment, pass it on rather than lose it.
    return Effect.sync(() => (granted ? release() : leave()))
  })

  return {
    permits,
    unsafeAcquire,
    release,
    run: (effect) =>
      Effect.uninterruptibleMask((restore) =>
        Effect.zipRight(restore(acquire), Effect.ensuring(restore(effect), Effect.sync(release)))
      )
  }
}

export class ClientReads extends Effect.Service<ClientReads>()("ClientReads", {
  effect: Effect.map(DatabaseConfig, ({ poolMax }): Permits =>
    makePermits(Math.max(1, poolMax - CONNECTIONS_KEPT))
  )
}) {}
