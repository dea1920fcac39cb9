/**
 * What the dead-letter index holds, against the topic it follows (a real broker and PostgreSQL):
 * never a letter of an aborted Kafka transaction (it reads read_committed), and every letter it
 * indexed even once the topic's retention has deleted it there.
 */
import { randomBytes } from "node:crypto"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Option, Redacted } from "effect"
import * as Database from "../../src/db/Database.ts"
import { DeadLetterIndex } from "../../src/deadletters/DeadLetterIndex.ts"
import { toKafkaMessage } from "../../src/kafka/DeadLetters.ts"
import { deadLetterStack } from "../support/app.ts"
import { createTestDatabase } from "../support/database.ts"
import {
  createTopics,
  eventually,
  freshTopics,
  kafkaFor,
  produce,
  topicEnds,
  type TestTopics
} from "../support/kafka.ts"

/** A letter as an instance of the service parks it, under `key`. */
const letter = (topics: TestTopics, key: string) => {
  const m = toKafkaMessage(
    {
      kind: "schema",
      detail: `letter ${key}`,
      key: Buffer.from(key),
      value: Buffer.from(`{"order_uid":"${key}"}`),
      source: { topic: topics.topic, partition: 0, offset: "0" }
    },
    new Date()
  )
  return { key, value: m.value, headers: m.headers }
}

/** The dead-letter side of the service (the indexer and replay) on `url`, for as long as `use` runs. */
const withIndexer = <A, E>(topics: TestTopics, url: string, use: Effect.Effect<A, E, DeadLetterIndex>) =>
  use.pipe(
    Effect.provide(deadLetterStack(topics, Database.layer({ url: Redacted.make(url), maxConnections: 4 })))
  )

/** The keys of the indexed letters, oldest first, once `last` is among them. */
const indexedUpTo = (last: string) =>
  Effect.gen(function* () {
    const index = yield* DeadLetterIndex
    const keys = Effect.map(index.list({}, 200, Option.none()), (page) =>
      page.items.map((l) => l.key!.data).reverse()
    )
    yield* eventually(
      `the letter ${last} is indexed`,
      Effect.map(keys, (k) => k.includes(last)),
      60_000
    )
    return yield* keys
  })

describe("the dead-letter index and its topic", () => {
  it.live(
    "a letter of an aborted Kafka transaction is never indexed; the committed one after it is",
    () => {
      const topics = freshTopics()
      return Effect.gen(function* () {
        const url = yield* createTestDatabase
        yield* createTopics(topics)
        const id = randomBytes(4).toString("hex")
        const [aborted, committed] = [`${id}-aborted`, `${id}-committed`]

        // As an instance that parks a batch and then loses its transaction, then parks the next.
        const producer = kafkaFor(topics.brokers).producer({
          transactionalId: `dead-letters-${id}`,
          idempotent: true,
          maxInFlightRequests: 1
        })
        yield* Effect.acquireRelease(
          Effect.promise(() => producer.connect()),
          () => Effect.promise(() => producer.disconnect())
        )
        for (const [key, commit] of [
          [aborted, false],
          [committed, true]
        ] as const) {
          yield* Effect.promise(async () => {
            const transaction = await producer.transaction()
            await transaction.send({
              topic: topics.dlqTopic,
              messages: [{ ...letter(topics, key), partition: 0 }]
            })
            await (commit ? transaction.commit() : transaction.abort())
          })
        }

        // Both letters are on the partition, the aborted one first.
        const [partition0] = yield* Effect.promise(() => topicEnds(kafkaFor(topics.brokers), topics.dlqTopic))
        expect(partition0!.high).toBeGreaterThanOrEqual(2n)

        const keys = yield* withIndexer(topics, url, indexedUpTo(committed))
        expect(keys).toEqual([committed])
      }).pipe(Effect.scoped)
    },
    120_000
  )

  it.live(
    "letters the topic's retention has deleted stay in the index, and what is parked after them is indexed too",
    () => {
      const topics = freshTopics()
      return Effect.gen(function* () {
        const url = yield* createTestDatabase
        yield* createTopics(topics)
        const id = randomBytes(4).toString("hex")
        const early = [0, 1, 2].map((i) => `${id}-early-${i}`)
        const late = [0, 1].map((i) => `${id}-late-${i}`)

        yield* produce(
          topics.brokers,
          topics.dlqTopic,
          early.map((key) => letter(topics, key)),
          0
        )
        expect(yield* withIndexer(topics, url, indexedUpTo(early.at(-1)!))).toEqual(early)

        // While the service is down, the topic's retention deletes everything it holds (what
        // `retention.ms` does segment by segment, done at once), and another instance parks two more.
        const kafka = kafkaFor(topics.brokers)
        const ends = yield* Effect.promise(() => topicEnds(kafka, topics.dlqTopic))
        yield* Effect.promise(async () => {
          const admin = kafka.admin()
          await admin.connect()
          try {
            // kafkajs deletes records only of topics whose metadata it holds.
            await admin.fetchTopicMetadata({ topics: [topics.dlqTopic] })
            await admin.deleteTopicRecords({
              topic: topics.dlqTopic,
              partitions: ends.map((p) => ({ partition: p.partition, offset: String(p.high) }))
            })
          } finally {
            await admin.disconnect()
          }
        })
        const [afterRetention] = yield* Effect.promise(() => topicEnds(kafka, topics.dlqTopic))
        expect(afterRetention!.low).toBe(BigInt(early.length))
        yield* produce(
          topics.brokers,
          topics.dlqTopic,
          late.map((key) => letter(topics, key)),
          0
        )

        expect(yield* withIndexer(topics, url, indexedUpTo(late.at(-1)!))).toEqual([...early, ...late])
      }).pipe(Effect.scoped)
    },
    120_000
  )
})
