import { SqlClient } from "@effect/sql"
import { SqlError } from "@effect/sql/SqlError"
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Either, Fiber, Layer, Redacted } from "effect"
import { makePermits, readQueueFull } from "../../src/db/ClientReads.ts"
import * as Database from "../../src/db/Database.ts"
import { isStatementCancelled } from "../../src/db/SqlErrors.ts"
import { answerReadFailures, readFailedAnswer } from "../../src/http/ReadFailures.ts"
import { scrape } from "../../src/observability/Prometheus.ts"
import { createTestDatabase } from "../support/database.ts"
import { metricValue, parseMetrics } from "../support/metrics.ts"
import { waitUntil } from "../support/sse.ts"

describe("the permits of reads for clients", () => {
  it.live("at most `permits` run at once, and those waiting start in the order they came", () =>
    Effect.gen(function* () {
      const permits = makePermits(2)
      const started: Array<number> = []
      let running = 0
      let most = 0
      const work = (i: number) =>
        permits.run(
          Effect.gen(function* () {
            started.push(i)
            most = Math.max(most, ++running)
            yield* Effect.sleep("10 millis")
            running--
          })
        )
      // Forked one after another, so that they ask in this order.
      const fibers: Array<Fiber.RuntimeFiber<void, unknown>> = []
      for (let i = 0; i < 8; i++) fibers.push(yield* Effect.fork(work(i)))
      yield* Fiber.joinAll(fibers)
      expect(most).toBe(2)
      expect(started).toEqual([0, 1, 2, 3, 4, 5, 6, 7])
    })
  )

  it.live("a waiter interrupted in line, or failing, neither keeps a permit nor makes one", () =>
    Effect.gen(function* () {
      const permits = makePermits(1)
      const gate = yield* Deferred.make<void>()
      const held = yield* Deferred.make<void>()
      const holder = yield* Effect.fork(
        permits.run(Deferred.succeed(held, undefined).pipe(Effect.zipRight(Deferred.await(gate))))
      )
      yield* Deferred.await(held)
      const quitter = yield* Effect.fork(permits.run(Effect.void))
      const failing = yield* Effect.fork(permits.run(Effect.fail("no")))
      let ran = false
      const patient = yield* Effect.fork(permits.run(Effect.sync(() => (ran = true))))
      yield* waitUntil("three reads in line", () => permits.line.size() === 3)
      yield* Fiber.interrupt(quitter)
      expect(ran).toBe(false)
      yield* Deferred.succeed(gate, undefined)
      yield* Fiber.join(holder)
      expect(yield* Effect.either(Fiber.join(failing))).toMatchObject({ _tag: "Left", left: "no" })
      yield* Fiber.join(patient)
      expect(ran).toBe(true)
      // Exactly one permit is left: two at once still run one after the other.
      let running = 0
      let most = 0
      const step = permits.run(
        Effect.gen(function* () {
          most = Math.max(most, ++running)
          yield* Effect.sleep("5 millis")
          running--
        })
      )
      yield* Effect.all([step, step, step], { concurrency: "unbounded" })
      expect(most).toBe(1)
    })
  )

  it.live("a permit handed over as its waiter is interrupted goes on to the next one", () =>
    Effect.gen(function* () {
      const permits = makePermits(1)
      for (let round = 0; round < 50; round++) {
        const gate = yield* Deferred.make<void>()
        const holder = yield* Effect.fork(permits.run(Deferred.await(gate)))
        yield* Effect.yieldNow()
        const waiter = yield* Effect.fork(permits.run(Effect.void))
        yield* Effect.yieldNow()
        // The release and the interruption at the same moment.
        yield* Effect.all([Deferred.succeed(gate, undefined), Fiber.interrupt(waiter)], {
          concurrency: "unbounded"
        })
        yield* Fiber.join(holder)
      }
      yield* permits.run(Effect.void)
    }).pipe(
      // Had a permit been lost, the next round (or the last read) would wait forever.
      Effect.timeout("5 seconds")
    )
  )

  it("without an Effect: a caller that leaves the line is never granted, and its turn passes on", () => {
    const permits = makePermits(1)
    const granted: Array<string> = []
    const grant = (who: string) => () => void granted.push(who)
    expect(permits.unsafeAcquire(grant("first"))()).toBe(false) // granted at once: nothing to leave
    const leaveSecond = permits.unsafeAcquire(grant("second"))
    permits.unsafeAcquire(grant("third"))
    expect(leaveSecond()).toBe(true)
    expect(leaveSecond()).toBe(false)
    expect(granted).toEqual(["first"])
    permits.release()
    expect(granted).toEqual(["first", "third"])
    permits.release()
    // The permit is free again: the next caller gets it at once, and only one.
    permits.unsafeAcquire(grant("fourth"))
    permits.unsafeAcquire(grant("fifth"))
    expect(granted).toEqual(["first", "third", "fourth"])
  })

  it("a long line, with callers leaving and coming all along, is served in arrival order and loses no permit", () => {
    const permits = makePermits(2)
    const granted: Array<number> = []
    const leaves = new Map<number, () => boolean>()
    let next = 0
    const ask = () => {
      const who = next++
      leaves.set(
        who,
        permits.unsafeAcquire(() => void granted.push(who))
      )
    }
    ask()
    ask() // both permits held: everyone else waits
    const expected = [0, 1]
    for (let round = 0; round < 300; round++) {
      for (let i = 0; i < 3; i++) ask()
      // Every third caller asked so far who is still waiting gives up.
      const quitter = next - 2
      expect(leaves.get(quitter)!()).toBe(true)
      permits.release()
    }
    for (let who = 2; who < next; who++) if ((who - 2) % 3 !== 1) expected.push(who)
    // Serve everyone still waiting, then both permits come back free.
    while (granted.length < expected.length) permits.release()
    expect(granted).toEqual(expected)
    expect(leaves.get(5)!()).toBe(false) // granted long ago: nothing to leave
    permits.release()
    permits.release()
    permits.unsafeAcquire(() => void granted.push(-1))
    permits.unsafeAcquire(() => void granted.push(-2))
    permits.unsafeAcquire(() => void granted.push(-3))
    expect(granted.slice(expected.length)).toEqual([-1, -2])
  })
})

describe("the line of reads for clients (database.client_read_queue)", () => {
  const shedReadQueue = Effect.map(scrape, (text) =>
    metricValue(parseMetrics(text), "http_shed_requests_total", { reason: "read_queue" })
  )
  const queued = Effect.map(scrape, (text) => metricValue(parseMetrics(text), "client_reads_queued"))

  it.live(
    "past the bound a read is refused at once, counted as shed; the gauge shows the line and empties",
    () =>
      Effect.gen(function* () {
        const permits = makePermits(1, 2)
        // The only permit is held: reads wait.
        permits.unsafeAcquire(() => {})
        const shedBefore = yield* shedReadQueue
        const queuedBefore = yield* queued
        const first = yield* Effect.fork(permits.run(Effect.succeed("first")))
        const second = yield* Effect.fork(permits.run(Effect.succeed("second")))
        yield* waitUntil("two reads in line", () => permits.line.size() === 2)
        expect((yield* queued) - queuedBefore).toBe(2)

        // The third is refused at once, without waiting for anyone.
        expect(
          yield* Effect.either(permits.run(Effect.succeed("third")).pipe(Effect.timeout("1 second")))
        ).toEqual(Either.left(readQueueFull))
        expect((yield* shedReadQueue) - shedBefore).toBe(1)

        // The line moves on: both waiting reads run, and the gauge is back where it was.
        permits.release()
        expect(yield* Fiber.join(first)).toBe("first")
        expect(yield* Fiber.join(second)).toBe("second")
        expect(permits.line.size()).toBe(0)
        expect((yield* queued) - queuedBefore).toBe(0)
        expect(yield* queued).toBe(0)
        // A read that waits and gives up (its client went: the fiber is interrupted) leaves its
        // place too, and never runs.
        permits.unsafeAcquire(() => {})
        let ran = false
        const quitter = yield* Effect.fork(permits.run(Effect.sync(() => (ran = true))))
        yield* waitUntil("the read in line", () => permits.line.size() === 1)
        yield* Fiber.interrupt(quitter)
        expect(permits.line.size()).toBe(0)
        expect(yield* queued).toBe(0)
        permits.release()
        expect(ran).toBe(false)
      })
  )
})

describe("the statement timeout of reads for clients (database.client_statement_timeout)", () => {
  const layer = Layer.unwrapScoped(
    Effect.map(createTestDatabase, (url) =>
      Database.layer({ url: Redacted.make(url), maxConnections: 2, clientStatementTimeout: "300 millis" })
    )
  )

  it.layer(layer, { timeout: 60_000 })((it) => {
    it.effect("a slow read for a client is cancelled by PostgreSQL and answers 503; other work is not", () =>
      Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        const pool = yield* Database.PgPool
        const permits = makePermits(1)
        const slow = sql`SELECT pg_sleep(3)`

        // Through the SqlClient, as pages of orders and of dead letters run.
        const started = Date.now()
        const failed = yield* Effect.flip(permits.run(slow))
        expect(Date.now() - started).toBeLessThan(2_000)
        expect(failed).toBeInstanceOf(SqlError)
        expect(isStatementCancelled(failed as SqlError)).toBe(true)
        const answer = readFailedAnswer(failed as SqlError)
        expect(answer.status).toBe(503)
        expect(JSON.parse(answer.body!)).toMatchObject({
          error: "unavailable",
          message: "the database took too long"
        })
        expect(answer.headers).toEqual(expect.arrayContaining(["retry-after", "1"]))
        // Through the router the same answer: a 503 response with its Retry-After.
        const routed = yield* answerReadFailures(permits.run(slow))
        expect(routed).toMatchObject({
          status: 503,
          headers: expect.objectContaining({ "retry-after": "1" })
        })

        // Through the named prepared statements of the fast paths (cache misses, searches).
        const viaPool = yield* Effect.async<unknown>((resume) =>
          pool.clientQuery({ name: "slow-read", text: "SELECT pg_sleep(3)" }, (err) =>
            resume(Effect.succeed(err))
          )
        )
        expect((viaPool as { code?: string }).code).toBe("57014")

        // The same statement outside a read for a client (ingestion, warm-up…) keeps the server's
        // setting, on the same two connections that just served the client reads.
        yield* Effect.all([sql`SELECT pg_sleep(0.5)`, sql`SELECT pg_sleep(0.5)`], { concurrency: 2 })
        // And a client read after it has its timeout again.
        const again = yield* Effect.flip(permits.run(slow))
        expect(isStatementCancelled(again as SqlError)).toBe(true)
      })
    )
  })
})
