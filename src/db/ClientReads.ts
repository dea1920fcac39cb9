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

interface Waiter {
  readonly granted: () => void
  state: "waiting" | "granted" | "left"
}

/**
 * Permits handed over one at a time, in arrival order. Not `Effect.Semaphore`: in Effect 3 a
 * release wakes every waiting fiber to try again, and with 50 searches waiting for 8 permits that
 * cost more than the search itself (measured: 330 → 570 µs of the service's CPU a search). Here a
 * release hands its permit straight to the longest waiter, or puts it back.
 */
export const makePermits = (permits: number): Permits => {
  let free = permits
  // Waiters in arrival order, from `head` on; one that gives up is marked and skipped at its turn.
  // An array, not a Set: a long-lived Set or Map whose entries come and go keeps them alive through
  // V8's young-generation collections (see ReadBatcher).
  let waiting: Array<Waiter | undefined> = []
  let head = 0

  const release = () => {
    while (head < waiting.length) {
      const waiter = waiting[head]!
      waiting[head++] = undefined
      if (waiter.state === "waiting") {
        waiter.state = "granted"
        waiter.granted()
        return
      }
    }
    waiting = []
    head = 0
    free++
  }

  const unsafeAcquire = (granted: () => void) => {
    if (free > 0) {
      free--
      granted()
      return () => false
    }
    // Served waiters leave holes at the front; past half the array, they are cut off.
    if (head > 64 && head * 2 > waiting.length) ((waiting = waiting.slice(head)), (head = 0))
    const waiter: Waiter = { granted, state: "waiting" }
    waiting.push(waiter)
    return () => {
      if (waiter.state !== "waiting") return false
      waiter.state = "left"
      return true
    }
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
