import { describe, expect, it } from "@effect/vitest"
import { Effect, Fiber, Stream } from "effect"
import * as fc from "fast-check"
import { AssignerProtocol } from "kafkajs"
import {
  instanceOf,
  PROTOCOL_NAME,
  spread,
  type Member,
  type TopicPartition
} from "../../src/kafka/InstanceSpreadAssigner.ts"
import { KafkaClient } from "../../src/kafka/KafkaClient.ts"
import { makeKafkaConsumer } from "../../src/kafka/KafkaConsumer.ts"
import { createTopics, eventually, freshTopics, kafkaFor, produce, testConfig } from "../support/kafka.ts"

const partitionsOf = (topic: string, n: number): Array<TopicPartition> =>
  Array.from({ length: n }, (_, partition) => ({ topic, partition }))

const members = (instances: Record<string, number>): Array<Member> =>
  Object.entries(instances).flatMap(([instance, n]) =>
    Array.from({ length: n }, (_, i) => ({
      memberId: `consumer-${instance}-${i}-${(i * 7919) % 13}`,
      instance
    }))
  )

/** Partitions per process, and per member within each process. */
const counts = (group: ReadonlyArray<Member>, assignment: ReturnType<typeof spread>) => {
  const perInstance = new Map<string, number>()
  const perMember = new Map<string, Array<number>>()
  for (const { memberId, instance } of group) {
    const n = Object.values(assignment.get(memberId) ?? {}).reduce((sum, ps) => sum + ps.length, 0)
    perInstance.set(instance, (perInstance.get(instance) ?? 0) + n)
    perMember.set(instance, [...(perMember.get(instance) ?? []), n])
  }
  return { perInstance, perMember }
}

const spreadBy = (numbers: Iterable<number>) => {
  const list = [...numbers]
  return Math.max(...list) - Math.min(...list)
}

describe("partitions are spread over processes first, then over each process's consumers", () => {
  it("two processes of three consumers on three partitions: both get work, 2 and 1", () => {
    const group = members({ a: 3, b: 3 })
    const { perInstance } = counts(group, spread(group, partitionsOf("orders", 3)))
    expect([...perInstance.values()].sort()).toEqual([1, 2])
  })

  it("whatever the member ids, every partition goes to exactly one member and no process is short", () => {
    const arbitraryGroup = fc
      .array(fc.integer({ min: 1, max: 5 }), { minLength: 1, maxLength: 6 })
      .chain((sizes) =>
        fc.tuple(
          fc.constant(sizes),
          fc.uniqueArray(fc.string({ minLength: 1, maxLength: 12 }), {
            minLength: sizes.reduce((a, b) => a + b, 0),
            maxLength: sizes.reduce((a, b) => a + b, 0)
          })
        )
      )
      .map(([sizes, ids]) => {
        let next = 0
        return sizes.flatMap((size, instance) =>
          Array.from({ length: size }, () => ({ memberId: ids[next++]!, instance: `p${instance}` }))
        )
      })
    fc.assert(
      fc.property(
        arbitraryGroup,
        fc.integer({ min: 0, max: 40 }),
        fc.integer({ min: 0, max: 5 }),
        (group, n, m) => {
          const partitions = [...partitionsOf("orders", n), ...partitionsOf("other", m)]
          const assignment = spread(group, partitions)
          // Every member is answered, every partition owned once.
          expect([...assignment.keys()].sort()).toEqual(group.map((g) => g.memberId).sort())
          const owned = [...assignment.values()].flatMap((topics) =>
            Object.entries(topics).flatMap(([topic, ps]) => ps.map((p) => `${topic}/${p}`))
          )
          expect(owned.sort()).toEqual(partitions.map((p) => `${p.topic}/${p.partition}`).sort())
          // Processes differ by at most one partition, and so do the consumers within a process.
          const { perInstance, perMember } = counts(group, assignment)
          expect(spreadBy(perInstance.values())).toBeLessThanOrEqual(1)
          for (const local of perMember.values()) expect(spreadBy(local)).toBeLessThanOrEqual(1)
        }
      )
    )
  })

  it("a member that names no process counts as a process of its own", () => {
    const plain = AssignerProtocol.MemberMetadata.encode({
      version: 0,
      topics: ["orders"],
      userData: Buffer.alloc(0)
    })
    const named = AssignerProtocol.MemberMetadata.encode({
      version: 0,
      topics: ["orders"],
      userData: Buffer.from("host/1/abc")
    })
    expect(instanceOf("m-1", plain)).toBe("member:m-1")
    expect(instanceOf("m-2", named)).toBe("instance:host/1/abc")
    expect(instanceOf("m-3", Buffer.from([1, 2]))).toBe("member:m-3")
  })
})

describe("two processes' consumers in one group on a real broker", () => {
  it.live(
    "both processes consume, each from its own partitions, and together they read every message",
    () => {
      const topics = freshTopics()
      return Effect.gen(function* () {
        yield* createTopics(topics, 3)
        const seen = { a: new Map<number, number>(), b: new Map<number, number>() }
        const consume = (instanceId: "a" | "b") =>
          Effect.gen(function* () {
            const consumer = yield* makeKafkaConsumer({ concurrency: 3, members: 3, instanceId })
            // Every batch taken is settled, whatever happens: kafkajs waits in eachBatch until it is,
            // and a consumer left waiting there never stops, so closing the test's scope would
            // never end. A batch counts once it is committed; one whose commit fails (a rebalance)
            // is given back, fetched again and counted then.
            return yield* Effect.fork(
              Stream.runForEach(consumer.batches, (batch) =>
                Effect.gen(function* () {
                  yield* batch.commit
                  yield* batch.done
                  const partitions = seen[instanceId]
                  partitions.set(
                    batch.partition,
                    (partitions.get(batch.partition) ?? 0) + batch.messages.length
                  )
                }).pipe(
                  Effect.catchAll((error) =>
                    Effect.logWarning(`Committing a batch failed; giving it back: ${error.message}`)
                  ),
                  Effect.onExit(() => batch.abandon)
                )
              )
            )
          })
        // Both processes start together, as a deployment's instances do: one rebalance, not several.
        const fibers = yield* Effect.all([consume("a"), consume("b")], { concurrency: 2 })

        // The group settles on our protocol with all six consumers before anything is produced.
        const admin = kafkaFor(topics.brokers).admin()
        yield* Effect.acquireRelease(
          Effect.promise(() => admin.connect()),
          () => Effect.promise(() => admin.disconnect()).pipe(Effect.timeout("10 seconds"), Effect.ignore)
        )
        // Bounded, so that a broker slow to answer fails the test with a reason instead of hanging it.
        const describeGroup = Effect.promise(() => admin.describeGroups([topics.groupId])).pipe(
          Effect.timeoutFail({ duration: "20 seconds", onTimeout: () => new Error("describeGroups hung") }),
          Effect.orDie,
          Effect.map(({ groups }) => groups[0]!)
        )
        yield* Effect.logInfo("consumers started; waiting for the group to settle")
        yield* eventually(
          "six consumers share a stable assignment",
          Effect.map(
            describeGroup,
            (g) => g.state === "Stable" && g.members.length === 6 && g.protocol === PROTOCOL_NAME
          ),
          90_000
        )
        const group = yield* describeGroup
        yield* Effect.logInfo("group stable with six consumers; producing")
        const owned = { a: [] as Array<number>, b: [] as Array<number> }
        for (const member of group.members) {
          const { userData } = AssignerProtocol.MemberMetadata.decode(member.memberMetadata)!
          const { assignment } = AssignerProtocol.MemberAssignment.decode(member.memberAssignment)!
          owned[userData.toString() as "a" | "b"].push(...(assignment[topics.topic] ?? []))
        }
        expect([owned.a.length, owned.b.length].sort()).toEqual([1, 2])

        const messages = Array.from({ length: 3 }, (_, partition) =>
          Array.from({ length: 100 }, (_, i) => ({ key: `${partition}-${i}`, value: `{"n":${i}}` }))
        )
        for (const [partition, batch] of messages.entries()) {
          yield* produce(topics.brokers, topics.topic, batch, partition).pipe(
            Effect.timeoutFail({ duration: "30 seconds", onTimeout: () => new Error("producing hung") }),
            Effect.orDie
          )
        }
        yield* Effect.logInfo("produced 300 messages; waiting for them to be consumed")
        const total = () => [...seen.a.values(), ...seen.b.values()].reduce((a, b) => a + b, 0)
        yield* eventually(
          "all 300 messages are consumed",
          Effect.sync(() => total() >= 300),
          60_000
        )

        expect(total()).toBe(300)
        expect([...seen.a.keys()].sort()).toEqual(owned.a.sort())
        expect([...seen.b.keys()].sort()).toEqual(owned.b.sort())
        for (const fiber of fibers) yield* Fiber.interrupt(fiber)
      }).pipe(Effect.scoped, Effect.provide(KafkaClient.Default), Effect.provide(testConfig(topics)))
    },
    240_000
  )
})
