/**
 * Reads by key, batched across callers: the keys asked for while the event loop handles one round
 * of I/O are read together, in one statement, once that round is done (`setImmediate`). At most
 * `maxInFlight` batches run at a time; keys asked for meanwhile wait for the next one, so under
 * load batches grow instead of queueing for connections, and reads never hold more than
 * `maxInFlight` of the pool's connections (ingestion keeps the rest). A key already waiting or
 * being read is not read twice: its callers share the one read.
 *
 * Callers pass a callback rather than running an Effect each: a cache miss on the HTTP fast path
 * costs no fiber of its own, only its share of its batch's one (see src/http/HttpServer.ts).
 * `Effect.request` with a `RequestResolver` would batch only the requests of one fiber, and
 * `@effect/experimental`'s `dataLoader` still needs a fiber per caller.
 */
import { Cause, Effect, Exit, Option, Runtime } from "effect"

export interface ReadBatcherOptions<K, V, E, R> {
  /** The values of the keys found; a key missing from the map is not stored. */
  readonly read: (keys: ReadonlyArray<K>) => Effect.Effect<ReadonlyMap<K, V>, E, R>
  /** Keys in one batch at most. */
  readonly maxBatch: number
  /** Batches being read at once at most. */
  readonly maxInFlight: number
}

export interface ReadBatcher<K, V, E> {
  /** Calls `done` once, with the key's value (none if it is not stored) or why it could not be read. */
  readonly load: (key: K, done: (exit: Exit.Exit<Option.Option<V>, E>) => void) => void
  /** The same as an Effect. */
  readonly get: (key: K) => Effect.Effect<Option.Option<V>, E>
}

type Done<V, E> = (exit: Exit.Exit<Option.Option<V>, E>) => void

export const make = <K, V, E, R>(
  options: ReadBatcherOptions<K, V, E, R>
): Effect.Effect<ReadBatcher<K, V, E>, never, R> =>
  Effect.map(Effect.runtime<R>(), (runtime) => {
    const runCallback = Runtime.runCallback(runtime)
    const runSync = Runtime.runSync(runtime)
    /** Keys not yet sent, with their callers, in the order first asked. */
    let waiting = new Map<K, Array<Done<V, E>>>()
    /** Keys being read, with their callers. */
    const reading = new Map<K, Array<Done<V, E>>>()
    let inFlight = 0
    let scheduled = false

    const settle = (callers: ReadonlyArray<Done<V, E>>, exit: Exit.Exit<Option.Option<V>, E>) => {
      for (const done of callers) {
        // One caller that throws must not leave the others of its key unanswered.
        try {
          done(exit)
        } catch (defect) {
          runSync(Effect.logError("A batched read's caller failed", Cause.die(defect)))
        }
      }
    }

    const flush = () => {
      scheduled = false
      while (inFlight < options.maxInFlight && waiting.size > 0) {
        const batch = new Map<K, Array<Done<V, E>>>()
        for (const [key, callers] of waiting) {
          if (batch.size === options.maxBatch) break
          batch.set(key, callers)
          reading.set(key, callers)
        }
        if (batch.size === waiting.size) waiting = new Map()
        else for (const key of batch.keys()) waiting.delete(key)
        inFlight++
        runCallback(options.read(Array.from(batch.keys())), {
          onExit: (exit) => {
            inFlight--
            for (const key of batch.keys()) reading.delete(key)
            if (Exit.isSuccess(exit)) {
              const found = exit.value
              for (const [key, callers] of batch)
                settle(callers, Exit.succeed(Option.fromNullable(found.get(key))))
            } else {
              const failed: Exit.Exit<never, E> = Exit.failCause(exit.cause)
              for (const callers of batch.values()) settle(callers, failed)
            }
            schedule()
          }
        })
      }
    }

    const schedule = () => {
      if (!scheduled && waiting.size > 0 && inFlight < options.maxInFlight) {
        scheduled = true
        setImmediate(flush)
      }
    }

    const load = (key: K, done: Done<V, E>) => {
      const callers = reading.get(key) ?? waiting.get(key)
      if (callers !== undefined) return void callers.push(done)
      waiting.set(key, [done])
      schedule()
    }

    const get = (key: K): Effect.Effect<Option.Option<V>, E> => Effect.async((resume) => load(key, resume))

    return { load, get }
  })
