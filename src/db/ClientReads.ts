/**
 * The share of the connection pool that reads for HTTP clients may hold at once: cache misses,
 * searches, pages of recent orders and of dead letters. It is `database.pool_max` less two, so
 * that ingestion always finds a connection, however many clients ask and however long their
 * statements run (a search for a key that thousands of orders share reads all of them), and each
 * of their statements runs with `database.client_statement_timeout` (see `TimedPool`).
 *
 * The reads waiting for a permit — here, and in the batchers that share these permits
 * (`ReadBatcher`) — stand in one line of at most `database.client_read_queue`: past it a read is
 * refused at once (`ReadQueueFull`, answered 503 `overloaded`) rather than held. One line for both
 * rather than one each: they wait for the same connections (a batch takes its keys only once it
 * holds a permit), so what they hold — requests, memory, and the time the last of them waits —
 * adds up, and one number bounds the sum whatever the mix of traffic; it is also what the gauge
 * `client_reads_queued` shows.
 */
import { Data, Effect, Metric } from "effect"
import { DatabaseConfig } from "../config/AppConfig.ts"
import { countShed } from "../observability/Prometheus.ts"
import { readingForClient } from "./TimedPool.ts"

/** Connections of the pool that reads for clients never hold. */
const CONNECTIONS_KEPT = 2

/** A read refused at once: `database.client_read_queue` reads were already waiting. */
export class ReadQueueFull extends Data.TaggedError("ReadQueueFull")<{}> {}

/** Refusals come in floods: one value, rather than an error (and its stack) each. */
export const readQueueFull = new ReadQueueFull()

const queuedGauge = Metric.gauge("client_reads_queued", {
  description: "Reads for HTTP clients waiting for a database connection (ClientReads and ReadBatcher)"
})

/** The reads for clients waiting for a permit, wherever they wait. */
export interface ReadLine {
  /** Reads waiting at most (`database.client_read_queue`). */
  readonly max: number
  /** Reads waiting now. */
  readonly size: () => number
  /**
   * A read takes its place in line: true, or false when `max` already wait (the read is refused,
   * counted in `http_shed_requests_total{reason="read_queue"}`).
   */
  readonly unsafeEnter: () => boolean
  /** `n` reads leave the line: their turn came, or they gave up. */
  readonly unsafeLeave: (n: number) => void
}

export const makeLine = (max: number): ReadLine => {
  let size = 0
  return {
    max,
    size: () => size,
    unsafeEnter: () => {
      if (size >= max) {
        countShed("read_queue")
        return false
      }
      size++
      // By steps, not by value: each line adds its own to the process's gauge.
      queuedGauge.unsafeModify(1, [])
      return true
    },
    unsafeLeave: (n) => {
      if (n === 0) return
      size -= n
      queuedGauge.unsafeModify(-n, [])
    }
  }
}

export interface Permits {
  /** How many may run at once. */
  readonly permits: number
  /** The reads waiting for these permits, here and in the batchers that share them. */
  readonly line: ReadLine
  /**
   * Runs `effect` holding a permit, once one is free; waiters are served first come, first
   * served. With the line full it fails at once with `ReadQueueFull`. The effect's statements
   * run with the statement timeout of reads for clients.
   */
  readonly run: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E | ReadQueueFull, R>
  /**
   * A permit without an Effect, outside the line and never refused: for a batch of reads, whose
   * callers wait in the line themselves (`ReadBatcher`, which answers the order fast path's misses
   * without a fiber). Calls `granted` once a permit is free (at once if one is); the caller then
   * holds it until it calls `release`, once. Returns `leave`: before the grant it gives up the
   * place and returns true (`granted` is never called); after it, false.
   */
  readonly unsafeAcquire: (granted: () => void) => () => boolean
  readonly release: () => void
}

interface Waiter {
  readonly granted: () => void
  /** In the line (a read for a client), rather than a batch's request for a permit. */
  readonly counted: boolean
  state: "waiting" | "granted" | "left"
}

/**
 * Permits handed over one at a time, in arrival order. Not `Effect.Semaphore`: in Effect 3 a
 * release wakes every waiting fiber to try again, and with 50 searches waiting for 8 permits that
 * cost more than the search itself (measured: 330 → 570 µs of the service's CPU a search). Here a
 * release hands its permit straight to the longest waiter, or puts it back.
 */
export const makePermits = (permits: number, maxQueued: number = Number.POSITIVE_INFINITY): Permits => {
  const line = makeLine(maxQueued)
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
        if (waiter.counted) line.unsafeLeave(1)
        waiter.granted()
        return
      }
    }
    waiting = []
    head = 0
    free++
  }

  const nothingToLeave = () => false

  const ask = (granted: () => void, counted: boolean) => {
    // Served waiters leave holes at the front; past half the array, they are cut off.
    if (head > 64 && head * 2 > waiting.length) ((waiting = waiting.slice(head)), (head = 0))
    const waiter: Waiter = { granted, counted, state: "waiting" }
    waiting.push(waiter)
    return () => {
      if (waiter.state !== "waiting") return false
      waiter.state = "left"
      if (counted) line.unsafeLeave(1)
      return true
    }
  }

  const unsafeAcquire = (granted: () => void) => {
    if (free > 0) {
      free--
      granted()
      return nothingToLeave
    }
    return ask(granted, false)
  }

  const acquire = Effect.async<void, ReadQueueFull>((resume) => {
    if (free > 0) {
      free--
      return resume(Effect.void)
    }
    if (!line.unsafeEnter()) return resume(Effect.fail(readQueueFull))
    let granted = false
    const leave = ask(() => {
      granted = true
      resume(Effect.void)
    }, true)
    // Interrupted while waiting: leave the line, or, if a permit was handed over at the same
    // moment, pass it on rather than lose it.
    return Effect.sync(() => (granted ? release() : leave()))
  })

  return {
    permits,
    line,
    unsafeAcquire,
    release,
    run: (effect) =>
      Effect.uninterruptibleMask((restore) =>
        Effect.zipRight(
          restore(acquire),
          Effect.ensuring(restore(Effect.locally(effect, readingForClient, true)), Effect.sync(release))
        )
      )
  }
}

export class ClientReads extends Effect.Service<ClientReads>()("ClientReads", {
  effect: Effect.map(DatabaseConfig, ({ poolMax, clientReadQueue }): Permits =>
    makePermits(Math.max(1, poolMax - CONNECTIONS_KEPT), clientReadQueue)
  )
}) {}
