import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Fiber } from "effect"
import { makePermits } from "../../src/db/ClientReads.ts"

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
      const holder = yield* Effect.fork(permits.run(Deferred.await(gate)))
      yield* Effect.sleep("5 millis")
      const quitter = yield* Effect.fork(permits.run(Effect.void))
      const failing = yield* Effect.fork(permits.run(Effect.fail("no")))
      let ran = false
      const patient = yield* Effect.fork(permits.run(Effect.sync(() => (ran = true))))
      yield* Effect.sleep("5 millis")
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
