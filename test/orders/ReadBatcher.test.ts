import { describe, expect, it } from "@effect/vitest"
import { Cause, Deferred, Effect, Either, Exit, FiberId, Option } from "effect"
import { makePermits, ReadQueueFull, readQueueFull } from "../../src/db/ClientReads.ts"
import { scrape } from "../../src/observability/Prometheus.ts"
import * as ReadBatcher from "../../src/orders/ReadBatcher.ts"
import { metricValue, parseMetrics } from "../support/metrics.ts"
import { waitUntil } from "../support/sse.ts"

/** A store of `k<n>` → n whose reads are recorded and wait for `release` when it is given. */
const recordingStore = (
  options: { readonly release?: Deferred.Deferred<void>; readonly failWith?: string } = {}
) => {
  const reads: Array<ReadonlyArray<string>> = []
  const read = (keys: ReadonlyArray<string>) =>
    Effect.gen(function* () {
      reads.push(keys)
      if (options.release) yield* Deferred.await(options.release)
      if (options.failWith !== undefined) return yield* Effect.fail(options.failWith)
      return new Map(keys.filter((k) => k.startsWith("k")).map((k) => [k, Number(k.slice(1))]))
    })
  return { reads, read }
}

const keys = (n: number, from = 0) => Array.from({ length: n }, (_, i) => `k${from + i}`)

/** Asks for `key` now (`load` registers the caller before it returns), and the Effect of its answer. */
const ask = <V, E>(batcher: ReadBatcher.ReadBatcher<string, V, E>, key: string) => {
  const answer = Deferred.unsafeMake<Option.Option<V>, E | ReadQueueFull>(FiberId.none)
  batcher.load(key, (exit) => Deferred.unsafeDone(answer, exit))
  return Deferred.await(answer)
}

const askAll = <V, E>(batcher: ReadBatcher.ReadBatcher<string, V, E>, keys: ReadonlyArray<string>) =>
  Effect.all(
    keys.map((key) => ask(batcher, key)),
    { concurrency: "unbounded" }
  )

/**
 * One turn of the event loop: a batch takes its keys in a `setImmediate` once it holds a permit,
 * so after this, whatever could have been taken has been.
 */
const nextTurn = Effect.promise(() => new Promise<void>((resolve) => setImmediate(resolve)))

describe("ReadBatcher", () => {
  it.live("keys asked for together are read in one statement; each caller gets its own value", () =>
    Effect.gen(function* () {
      const store = recordingStore()
      const batcher = yield* ReadBatcher.make({ read: store.read, maxBatch: 100, permits: makePermits(2) })
      const results = yield* askAll(batcher, ["k1", "k2", "missing", "k3"])
      expect(results).toEqual([Option.some(1), Option.some(2), Option.none(), Option.some(3)])
      expect(store.reads).toEqual([["k1", "k2", "missing", "k3"]])
    })
  )

  it.live("the same key asked for while it is waiting or being read is read once", () =>
    Effect.gen(function* () {
      const release = yield* Deferred.make<void>()
      const store = recordingStore({ release })
      const batcher = yield* ReadBatcher.make({ read: store.read, maxBatch: 100, permits: makePermits(2) })
      const waiting = [ask(batcher, "k7"), ask(batcher, "k7")]
      yield* waitUntil("k7 is being read", () => store.reads.length === 1)
      const later = ask(batcher, "k7")
      yield* Deferred.succeed(release, undefined)
      expect(yield* Effect.all(waiting)).toEqual([Option.some(7), Option.some(7)])
      expect(yield* later).toEqual(Option.some(7))
      expect(store.reads).toEqual([["k7"]])
    })
  )

  it.live("a batch holds at most maxBatch keys, and at most as many batches run as there are permits", () =>
    Effect.gen(function* () {
      const release = yield* Deferred.make<void>()
      const store = recordingStore({ release })
      const batcher = yield* ReadBatcher.make({ read: store.read, maxBatch: 10, permits: makePermits(2) })
      const all = askAll(batcher, keys(35))
      yield* waitUntil("two batches are being read", () => store.reads.length === 2)
      yield* nextTurn
      // Two batches of ten are being read; the other fifteen wait.
      expect(store.reads.map((r) => r.length)).toEqual([10, 10])
      yield* Deferred.succeed(release, undefined)
      expect(yield* all).toEqual(keys(35).map((_, i) => Option.some(i)))
      expect(store.reads.map((r) => r.length)).toEqual([10, 10, 10, 5])
      expect(store.reads.flat().sort()).toEqual(keys(35).sort())
    })
  )

  it.live("keys asked for while the batches run go together in the next one", () =>
    Effect.gen(function* () {
      const release = yield* Deferred.make<void>()
      const store = recordingStore({ release })
      const batcher = yield* ReadBatcher.make({ read: store.read, maxBatch: 100, permits: makePermits(1) })
      const first = ask(batcher, "k0")
      yield* waitUntil("k0 is being read", () => store.reads.length === 1)
      const rest = keys(5, 1).map((k) => ask(batcher, k))
      yield* nextTurn
      expect(store.reads).toEqual([["k0"]])
      yield* Deferred.succeed(release, undefined)
      expect(yield* first).toEqual(Option.some(0))
      expect(yield* Effect.all(rest)).toEqual([1, 2, 3, 4, 5].map(Option.some))
      expect(store.reads).toEqual([["k0"], keys(5, 1)])
    })
  )

  it.live("a failed read fails each of its callers, and the next keys are read again", () =>
    Effect.gen(function* () {
      const store = recordingStore({ failWith: "database down" })
      const batcher = yield* ReadBatcher.make({ read: store.read, maxBatch: 100, permits: makePermits(2) })
      const exits = yield* Effect.all(
        ["k1", "k2"].map((k) => Effect.exit(ask(batcher, k))),
        { concurrency: "unbounded" }
      )
      expect(exits).toEqual([Exit.fail("database down"), Exit.fail("database down")])
      const again = yield* Effect.exit(ask(batcher, "k1"))
      expect(again).toEqual(Exit.fail("database down"))
      expect(store.reads).toEqual([["k1", "k2"], ["k1"]])
    })
  )

  it.live("a caller whose callback throws does not keep the others of its key from their answer", () =>
    Effect.gen(function* () {
      const store = recordingStore()
      const batcher = yield* ReadBatcher.make({ read: store.read, maxBatch: 100, permits: makePermits(2) })
      const answered = yield* Deferred.make<Option.Option<number>>()
      batcher.load("k4", () => {
        throw new Error("a caller's bug")
      })
      batcher.load("k4", (exit) => {
        if (Exit.isSuccess(exit)) Deferred.unsafeDone(answered, Exit.succeed(exit.value))
      })
      expect(yield* Deferred.await(answered)).toEqual(Option.some(4))
    })
  )

  it.live("a batch takes its keys once it holds a permit; until then a caller may leave the line", () =>
    Effect.gen(function* () {
      const store = recordingStore()
      const permits = makePermits(1)
      const batcher = yield* ReadBatcher.make({ read: store.read, maxBatch: 100, permits })
      // Someone else (a page of recent orders, say) holds the only permit.
      permits.unsafeAcquire(() => {})
      const answered: Array<string> = []
      const answer = (name: string) => (exit: Exit.Exit<Option.Option<number>, unknown>) =>
        void answered.push(`${name}=${Exit.isSuccess(exit) ? Option.getOrNull(exit.value) : "failed"}`)
      batcher.load("k1", answer("first"))
      const leave = batcher.load("k2", answer("gone"))
      batcher.load("k3", answer("third"))
      // The same key twice, one of its callers leaving: the other still gets it.
      const leaveOne = batcher.load("k3", answer("third again"))
      yield* nextTurn
      expect(store.reads).toEqual([])
      expect(leave()).toBe(true)
      expect(leaveOne()).toBe(true)
      expect(leave()).toBe(false)
      permits.release()
      yield* waitUntil("both callers answered", () => answered.length === 2)
      expect(store.reads).toEqual([["k1", "k3"]])
      expect(answered).toEqual(["first=1", "third=3"])
    })
  )

  it.live("a caller taken into a batch can no longer leave; a permit nobody needs any more goes back", () =>
    Effect.gen(function* () {
      const release = yield* Deferred.make<void>()
      const store = recordingStore({ release })
      const permits = makePermits(1)
      const batcher = yield* ReadBatcher.make({ read: store.read, maxBatch: 100, permits })
      const answer = yield* Deferred.make<void>()
      const taken = batcher.load("k1", () => Deferred.unsafeDone(answer, Exit.void))
      yield* waitUntil("k1 is being read", () => store.reads.length === 1)
      expect(store.reads).toEqual([["k1"]])
      expect(taken()).toBe(false)
      yield* Deferred.succeed(release, undefined)
      yield* Deferred.await(answer)
      // k2 asks for a permit while another holds it, and leaves before it is granted: the batch
      // it would have gone in gets the permit, finds nobody, and gives it back.
      permits.unsafeAcquire(() => {})
      const leave = batcher.load("k2", () => {})
      expect(leave()).toBe(true)
      permits.release()
      yield* nextTurn
      expect(store.reads).toEqual([["k1"]])
      let granted = false
      permits.unsafeAcquire(() => (granted = true))
      expect(granted).toBe(true)
    })
  )

  it.live("maxInFlight bounds the batches below the permits; the other permits stay free for others", () =>
    Effect.gen(function* () {
      const release = yield* Deferred.make<void>()
      const store = recordingStore({ release })
      const permits = makePermits(4)
      const batcher = yield* ReadBatcher.make({ read: store.read, maxBatch: 10, permits, maxInFlight: 1 })
      const all = askAll(batcher, keys(25))
      yield* waitUntil("a batch is being read", () => store.reads.length === 1)
      yield* nextTurn
      expect(store.reads.map((r) => r.length)).toEqual([10])
      // Three permits are left for other reads.
      let granted = 0
      for (let i = 0; i < 3; i++) permits.unsafeAcquire(() => granted++)
      expect(granted).toBe(3)
      for (let i = 0; i < 3; i++) permits.release()
      yield* Deferred.succeed(release, undefined)
      expect(yield* all).toEqual(keys(25).map((_, i) => Option.some(i)))
      expect(store.reads.map((r) => r.length)).toEqual([10, 10, 5])
    })
  )

  it.live("a read that throws instead of failing fails its callers, and its permit comes back", () =>
    Effect.gen(function* () {
      const reads: Array<ReadonlyArray<string>> = []
      let throwing = true
      const permits = makePermits(1)
      const batcher = yield* ReadBatcher.make<string, number, string>({
        read: (keys) => {
          reads.push(keys)
          if (throwing) throw new Error("the driver threw")
          return Effect.succeed(new Map(keys.map((k) => [k, Number(k.slice(1))])))
        },
        maxBatch: 3,
        permits
      })
      const failed = yield* Effect.exit(askAll(batcher, ["k8", "k9"]))
      expect(Exit.isFailure(failed) && String(Cause.squash(failed.cause))).toContain("the driver threw")
      throwing = false
      // The one permit was given back: the next read runs.
      expect(yield* ask(batcher, "k10").pipe(Effect.timeout("2 seconds"))).toEqual(Option.some(10))
      expect(reads).toEqual([["k8", "k9"], ["k10"]])
    })
  )
})

describe("ReadBatcher in the line of reads (database.client_read_queue)", () => {
  const shedReadQueue = Effect.map(scrape, (text) =>
    metricValue(parseMetrics(text), "http_shed_requests_total", { reason: "read_queue" })
  )
  const queued = Effect.map(scrape, (text) => metricValue(parseMetrics(text), "client_reads_queued"))

  it.live("a caller past the bound is refused at once; those in line are read, and the line empties", () =>
    Effect.gen(function* () {
      const store = recordingStore()
      const permits = makePermits(1, 3)
      const batcher = yield* ReadBatcher.make({ read: store.read, maxBatch: 100, permits })
      // Someone else holds the only permit: callers wait for a batch.
      permits.unsafeAcquire(() => {})
      const shedBefore = yield* shedReadQueue
      const answered: Array<string> = []
      const answer = (name: string) => (exit: Exit.Exit<Option.Option<number>, unknown>) =>
        void answered.push(
          `${name}=${
            Exit.isSuccess(exit)
              ? Option.getOrNull(exit.value)
              : Exit.isFailure(exit) &&
                Cause.failureOption(exit.cause).pipe(
                  Option.map((e) => (e instanceof ReadQueueFull ? "refused" : "failed")),
                  Option.getOrElse(() => "died")
                )
          }`
        )
      batcher.load("k1", answer("a"))
      batcher.load("k2", answer("b"))
      batcher.load("k1", answer("c")) // the same key: one more caller in line all the same
      expect(permits.line.size()).toBe(3)
      expect(yield* queued).toBe(3)
      // The line is full: a new key, or one more caller of a waiting key, is refused at once.
      batcher.load("k3", answer("d"))
      batcher.load("k2", answer("e"))
      expect(answered).toEqual(["d=refused", "e=refused"])
      expect((yield* shedReadQueue) - shedBefore).toBe(2)
      expect(yield* Effect.either(ask(batcher, "k4"))).toEqual(Either.left(readQueueFull))

      permits.release()
      yield* waitUntil("the callers in line answered", () => answered.length === 5)
      expect(store.reads).toEqual([["k1", "k2"]])
      expect(answered.slice(2)).toEqual(["a=1", "c=1", "b=2"])
      expect(permits.line.size()).toBe(0)
      expect(yield* queued).toBe(0)
    })
  )

  it.live("a caller of a key being read waits for no connection: never refused, never in line", () =>
    Effect.gen(function* () {
      const release = yield* Deferred.make<void>()
      const store = recordingStore({ release })
      const permits = makePermits(1, 1)
      const batcher = yield* ReadBatcher.make({ read: store.read, maxBatch: 100, permits })
      const first = ask(batcher, "k5")
      yield* waitUntil("k5 is being read", () => store.reads.length === 1)
      expect(store.reads).toEqual([["k5"]])
      // The permit is the batch's; the line holds one at most: it takes `k6`, and the joiners of `k5` take none.
      const second = ask(batcher, "k6")
      const joiners = [ask(batcher, "k5"), ask(batcher, "k5")]
      expect(permits.line.size()).toBe(1)
      yield* Deferred.succeed(release, undefined)
      expect(yield* first).toEqual(Option.some(5))
      expect(yield* Effect.all(joiners)).toEqual([Option.some(5), Option.some(5)])
      expect(yield* second).toEqual(Option.some(6))
      expect(permits.line.size()).toBe(0)
    })
  )
})
