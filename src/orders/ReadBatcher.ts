/**
 * Reads by key, batched across callers. A batch waits for a permit of the pool's share for clients
 * (`ClientReads`) and takes its keys only once it holds one, after the event loop has finished its
 * round of I/O (`setImmediate`): every key asked for until then goes in, up to `maxBatch`. Under
 * load, batches therefore grow instead of queueing for connections, and a caller can still leave
 * the line until its key is taken. A key already waiting or being read is not read twice: its
 * callers share the one read.
 *
 * Each caller waiting for its key to be taken has a place in the permits' line of reads
 * (`ClientReads`: `database.client_read_queue` in all): with the line full, a caller is refused at
 * once (`ReadQueueFull`). A caller of a key already being read waits for no connection and takes
 * no place.
 *
 * Callers pass a callback rather than running an Effect each: a cache miss on the order fast path
 * costs no fiber of its own, only its share of its batch's one (see src/http/HttpServer.ts);
 * callers that are fibers wrap `load` in `Effect.async` (`Orders.search`). `Effect.request` with a
 * `RequestResolver` would batch only the requests of one fiber, and `@effect/experimental`'s
 * `dataLoader` still needs a fiber per caller.
 */
import { Cause, Effect, Exit, Option, Runtime } from "effect"
import { type Permits, readQueueFull, type ReadQueueFull } from "../db/ClientReads.ts"

export interface ReadBatcherOptions<K, V, E, R> {
  /** The values of the keys found, read in a fiber of its own per batch; a key missing from the map is not stored. */
  readonly read: (keys: ReadonlyArray<K>) => Effect.Effect<ReadonlyMap<K, V>, E, R>
  /** Keys in one batch at most. */
  readonly maxBatch: number
  /** One is held by each batch while it is read. */
  readonly permits: Permits
  /** Batches being read at once at most (and never more than there are permits); all when not given. */
  readonly maxInFlight?: number | undefined
}

export interface ReadBatcher<K, V, E> {
  /**
   * Calls `done` once, with the key's value (none if it is not stored) or why it could not be
   * read, unless the returned `leave` is called while the key still waits for a batch: it then
   * returns true, and `done` is never called (after that, it returns false). With the line of
   * reads full, `done` is called at once with `ReadQueueFull`. A callback, not an Effect: the
   * order fast path answers its misses from it without a fiber.
   */
  readonly load: (
    key: K,
    done: (exit: Exit.Exit<Option.Option<V>, E | ReadQueueFull>) => void
  ) => () => boolean
}

type Done<V, E> = (exit: Exit.Exit<Option.Option<V>, E | ReadQueueFull>) => void

const refused: Exit.Exit<never, ReadQueueFull> = Exit.fail(readQueueFull)
const nothingToLeave = () => false

export const make = <K, V, E, R = never>(
  options: ReadBatcherOptions<K, V, E, R>
): Effect.Effect<ReadBatcher<K, V, E>, never, R> =>
  Effect.map(Effect.runtime<R>(), (runtime) => {
    const runCallback = Runtime.runCallback(runtime)
    const runSync = Runtime.runSync(runtime)
    const { read, permits, maxBatch } = options
    const { line } = permits
    const maxInFlight = Math.min(permits.permits, options.maxInFlight ?? permits.permits)
    // No Map here outlives its batch. In V8, a Map that lives on while keys come and go keeps what
    // passed through it alive through young-generation collections (its rehashed tables stay linked
    // to the newer ones): every caller, and its request, was promoted to the old generation, and
    // each collection took several times longer (docs/perf-notes/2026-11-25-to-12-07-lab-notes.md).
    /** Keys not yet taken by a batch, with their callers, in the order first asked. */
    let waiting = new Map<K, Array<Done<V, E>>>()
    /** The batches being read (`maxInFlight` at most), each with its keys' callers. */
    const reading: Array<Map<K, Array<Done<V, E>>>> = []
    const callersReading = (key: K) => {
      for (const batch of reading) {
        const callers = batch.get(key)
        if (callers !== undefined) return callers
      }
      return undefined
    }
    /** Permits asked for and not yet granted; granted and not yet used; held by a running batch. */
    let requested = 0
    let held = 0
    let running = 0
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

    /** Asks for as many permits as the waiting keys fill batches, within the batcher's share. */
    const askForPermits = () => {
      while ((requested + held) * maxBatch < waiting.size && requested + held + running < maxInFlight) {
        requested++
        permits.unsafeAcquire(granted)
      }
    }

    const granted = () => {
      requested--
      held++
      if (!scheduled) {
        scheduled = true
        setImmediate(flush)
      }
    }

    const flush = () => {
      scheduled = false
      for (; held > 0; held--) {
        // Every waiting caller left: the permit goes back unused.
        if (waiting.size === 0) {
          permits.release()
          continue
        }
        // The batch takes the waiting keys' Map, or, when more wait, the first `maxBatch` of them
        // and the rest go to a new one.
        let batch = waiting
        waiting = new Map()
        if (batch.size > maxBatch) {
          const all = batch
          batch = new Map()
          for (const entry of all) (batch.size < maxBatch ? batch : waiting).set(entry[0], entry[1])
        }
        // The batch's callers wait no longer for a connection.
        let taken = 0
        for (const callers of batch.values()) taken += callers.length
        line.unsafeLeave(taken)
        reading.push(batch)
        running++
        const onExit = (exit: Exit.Exit<ReadonlyMap<K, V>, E>) => {
          running--
          permits.release()
          reading.splice(reading.indexOf(batch), 1)
          if (Exit.isSuccess(exit)) {
            const found = exit.value
            for (const [key, callers] of batch)
              settle(callers, Exit.succeed(Option.fromNullable(found.get(key))))
          } else {
            const failed: Exit.Exit<never, E> = Exit.failCause(exit.cause)
            for (const callers of batch.values()) settle(callers, failed)
          }
          askForPermits()
        }
        // A read that throws instead of failing fails its callers all the same.
        const keys = Array.from(batch.keys())
        runCallback(
          Effect.suspend(() => read(keys)),
          { onExit }
        )
      }
    }

    const load = (key: K, done: Done<V, E>): (() => boolean) => {
      // A function of its own, so that the same `done` may wait twice and leave once.
      const caller: Done<V, E> = (exit) => done(exit)
      const reading = callersReading(key)
      if (reading !== undefined) {
        // Read already: no connection to wait for.
        reading.push(caller)
        return nothingToLeave
      }
      if (!line.unsafeEnter()) {
        done(refused)
        return nothingToLeave
      }
      const callers = waiting.get(key)
      if (callers !== undefined) callers.push(caller)
      else {
        waiting.set(key, [caller])
        askForPermits()
      }
      return () => {
        const callers = waiting.get(key)
        const at = callers === undefined ? -1 : callers.indexOf(caller)
        if (callers === undefined || at === -1) return false
        callers.splice(at, 1)
        if (callers.length === 0) waiting.delete(key)
        line.unsafeLeave(1)
        return true
      }
    }

    return { load }
  })
