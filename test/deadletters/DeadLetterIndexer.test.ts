/**
 * The dead-letter index follows the topic across restarts, on a real broker and PostgreSQL: what
 * was parked while this instance was down is there once it is back, and an emptied index is built
 * again from the topic.
 */
import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Option, Redacted } from "effect"
import * as Database from "../../src/db/Database.ts"
import { DeadLetterIndex } from "../../src/deadletters/DeadLetterIndex.ts"
import { toKafkaMessage } from "../../src/kafka/DeadLetters.ts"
import { RejectionKinds } from "../../src/orders/Rejection.ts"
import { deadLetterStack } from "../support/app.ts"
import { createTestDatabase } from "../support/database.ts"
import { createTopics, eventually, freshTopics, produce, type TestTopics } from "../support/kafka.ts"

/** Letters as an instance of the service parks them, `from` to `to` - 1, every kind in turn. */
const park = (topics: TestTopics, from: number, to: number) =>
  produce(
    topics.brokers,
    topics.dlqTopic,
    Array.from({ length: to - from }, (_, i) => {
      const n = from + i
      const m = toKafkaMessage(
        {
          kind: RejectionKinds[n % RejectionKinds.length]!,
          detail: `letter ${n}`,
          key: Buffer.from(`key-${n}`),
          value: Buffer.from(`{"n":${n}}`),
          source: { topic: topics.topic, partition: 0, offset: String(n) }
        },
        new Date(Date.UTC(2026, 10, 30, 8, 0, n))
      )
      return { key: `key-${n}`, value: m.value, headers: m.headers }
    })
  )

/** The dead-letter side of the service and its index, on `url`, for as long as `use` runs. */
const withService = <A, E>(topics: TestTopics, url: string, use: Effect.Effect<A, E, DeadLetterIndex>) =>
  use.pipe(
    Effect.provide(deadLetterStack(topics, Database.layer({ url: Redacted.make(url), maxConnections: 4 })))
  )

/** Every indexed letter's key, oldest first, and the counts by kind, once `expected` are listed. */
const indexed = (expected: number) =>
  Effect.gen(function* () {
    const index = yield* DeadLetterIndex
    const keys = Effect.map(index.list({}, 200, Option.none()), (page) =>
      page.items.map((l) => l.key!.data).reverse()
    )
    yield* eventually(
      `${expected} letters are indexed`,
      Effect.map(keys, (k) => k.length === expected),
      60_000
    )
    return { keys: yield* keys, counts: (yield* index.counts({})).counts }
  })

const countsOf = (n: number) => {
  const counts: Record<string, number> = {}
  for (let i = 0; i < n; i++) {
    const kind = RejectionKinds[i % RejectionKinds.length]!
    counts[kind] = (counts[kind] ?? 0) + 1
  }
  return counts
}

const keys = (n: number) => Array.from({ length: n }, (_, i) => `key-${i}`)

describe("the dead-letter index across restarts", () => {
  it.live(
    "letters parked while the service was down are indexed when it is back; an emptied index is built again from the topic",
    () => {
      const topics = freshTopics()
      return Effect.gen(function* () {
        const url = yield* createTestDatabase
        yield* createTopics(topics)
        yield* park(topics, 0, 4)
        const first = yield* withService(topics, url, indexed(4))
        expect(first.keys).toEqual(keys(4))

        // Down: another instance parks three more.
        yield* park(topics, 4, 7)
        const second = yield* withService(topics, url, indexed(7))
        expect(second.keys).toEqual(keys(7))
        expect(second.counts).toEqual(countsOf(7))

        // The index emptied (a new database, a botched restore): built again, each letter once.
        yield* Effect.flatMap(
          SqlClient.SqlClient,
          (sql) => sql`TRUNCATE dead_letters, dead_letter_kinds`
        ).pipe(Effect.provide(Database.layer({ url: Redacted.make(url), maxConnections: 1 })))
        const rebuilt = yield* withService(topics, url, indexed(7))
        expect(rebuilt.keys).toEqual(keys(7))
        expect(rebuilt.counts).toEqual(countsOf(7))
      }).pipe(Effect.scoped)
    },
    180_000
  )
})
