/**
 * The reader the "nothing else was dead-lettered" checks rely on: if it stopped short of a topic's
 * end, those checks would pass whatever the service did.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import type { Producer, Transaction } from "kafkajs"
import { randomBytes } from "node:crypto"
import { createTopics, freshTopics, kafkaFor, readToEnd, type TestTopics } from "./kafka.ts"

/** A transactional producer on the test's topics, disconnected at the end of the test. */
const transactional = (topics: TestTopics) =>
  Effect.acquireRelease(
    Effect.promise(async () => {
      const producer = kafkaFor(topics.brokers).producer({
        transactionalId: `reader-test-${randomBytes(5).toString("hex")}`,
        idempotent: true,
        maxInFlightRequests: 1
      })
      await producer.connect()
      return producer
    }),
    (producer) => Effect.promise(() => producer.disconnect())
  )

const send = (transaction: Transaction, topic: string, values: ReadonlyArray<string>) =>
  transaction.send({ topic, acks: -1, messages: values.map((value) => ({ value, partition: 0 })) })

const inTransaction = (producer: Producer, topic: string, values: ReadonlyArray<string>) =>
  Effect.promise(async () => {
    const transaction = await producer.transaction()
    await send(transaction, topic, values)
    return transaction
  })

const valuesOf = (records: ReadonlyArray<{ readonly value: Buffer | null }>) =>
  records.map((r) => r.value?.toString("utf8"))

describe("reading a topic back to its end offsets", () => {
  it.live(
    "gives every committed record, none of an aborted transaction, and gets past the markers",
    () => {
      const topics = freshTopics()
      return Effect.gen(function* () {
        yield* createTopics(topics, 1)
        const producer = yield* transactional(topics)
        const first = yield* inTransaction(producer, topics.topic, ["a", "b"])
        yield* Effect.promise(() => first.commit())
        const aborted = yield* inTransaction(producer, topics.topic, ["x", "y"])
        yield* Effect.promise(() => aborted.abort())
        const last = yield* inTransaction(producer, topics.topic, ["c"])
        yield* Effect.promise(() => last.commit())
        // The topic ends with a commit marker: the last message is not its last offset.
        const records = yield* Effect.promise(() => readToEnd(kafkaFor(topics.brokers), topics.topic, 20_000))
        expect(valuesOf(records)).toEqual(["a", "b", "c"])
        expect(yield* Effect.promise(() => readToEnd(kafkaFor(topics.brokers), topics.dlqTopic))).toEqual([])
      }).pipe(Effect.scoped)
    },
    60_000
  )

  it.live(
    "waits for a transaction that is still open and reads what it commits",
    () => {
      const topics = freshTopics()
      return Effect.gen(function* () {
        yield* createTopics(topics, 1)
        const producer = yield* transactional(topics)
        const open = yield* inTransaction(producer, topics.topic, ["late"])
        const reading = readToEnd(kafkaFor(topics.brokers), topics.topic, 30_000)
        yield* Effect.sleep("2 seconds")
        yield* Effect.promise(() => open.commit())
        expect(valuesOf(yield* Effect.promise(() => reading))).toEqual(["late"])
      }).pipe(Effect.scoped)
    },
    60_000
  )

  it.live(
    "fails, saying where it stopped, when the end is not reached in time",
    () => {
      const topics = freshTopics()
      return Effect.gen(function* () {
        yield* createTopics(topics, 1)
        const producer = yield* transactional(topics)
        const committed = yield* inTransaction(producer, topics.topic, ["kept"])
        yield* Effect.promise(() => committed.commit())
        const open = yield* inTransaction(producer, topics.topic, ["pending"])
        const failure = yield* Effect.promise(() =>
          readToEnd(kafkaFor(topics.brokers), topics.topic, 3_000).then(
            () => "read to the end",
            (error: unknown) => String(error)
          )
        )
        expect(failure).toMatch(/was not read to its end within 3000 ms \(partition 0 at 2 of 3\)/)
        yield* Effect.promise(() => open.abort())
      }).pipe(Effect.scoped)
    },
    60_000
  )
})
