/**
 * `dead_letters.retention`: letters parked longer ago are deleted from the service's index — in
 * chunks, with their counts — and not indexed again from the topic; the rest stay. On a real
 * PostgreSQL (and, for the indexer, a real broker).
 */
import { SqlError } from "@effect/sql/SqlError"
import { describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Duration, Effect, Either, Layer, Option, Redacted } from "effect"
import * as App from "../../src/App.ts"
import { loadDefaults } from "../support/config.ts"
import * as Database from "../../src/db/Database.ts"
import { DeadLetterIndex, type IndexedLetter } from "../../src/deadletters/DeadLetterIndex.ts"
import * as DeadLetterIndexer from "../../src/deadletters/DeadLetterIndexer.ts"
import { toKafkaMessage } from "../../src/kafka/DeadLetters.ts"
import { KafkaClient } from "../../src/kafka/KafkaClient.ts"
import { createTestDatabase, TestDatabase } from "../support/database.ts"
import { createTopics, eventually, freshTopics, produce, testConfig } from "../support/kafka.ts"

const DAY = 24 * 60 * 60 * 1000
const now = Date.now()
const RETENTION = Duration.days(30)
const cutoff = new Date(now - Duration.toMillis(RETENTION))

const letter = (partition: number, offset: number, kind: string, failedAt: Date): IndexedLetter => ({
  partition,
  offset: String(offset),
  kind,
  detail: `letter ${partition}/${offset}`,
  failedAt,
  source: { topic: "orders", partition: 0, offset: String(offset) },
  key: Buffer.from(`key-${partition}-${offset}`),
  value: Buffer.from(`{"customer":"${partition}/${offset}"}`),
  headers: [],
  orderUid: null,
  replayOf: null
})

// Expired and kept letters interleaved by offset and kind, on two partitions: a prune that went by
// offset, deleted the newer side, or missed the boundary would leave a different set. The one
// just past the cutoff stays (`failed_at < cutoff` goes).
const expired = [
  letter(0, 0, "schema", new Date(now - 400 * DAY)),
  letter(0, 2, "conflict", new Date(now - 60 * DAY)),
  letter(0, 9, "schema", new Date(now - 31 * DAY)),
  letter(1, 1, "invalid_json", new Date(now - 45 * DAY)),
  letter(1, 5, "schema", new Date(cutoff.getTime() - 1_000)),
  letter(1, 6, "business_rule", new Date(now - 30 * DAY - 60_000)),
  letter(1, 8, "conflict", new Date(now - 90 * DAY))
]
const kept = [
  letter(0, 1, "schema", new Date(cutoff.getTime() + 60_000)),
  letter(0, 3, "conflict", new Date(now - 29 * DAY)),
  letter(0, 4, "too_large", new Date(now - 60 * 60 * 1000)),
  letter(1, 0, "schema", new Date(now - DAY)),
  letter(1, 7, "invalid_json", new Date(now))
]

const place = (l: { readonly partition: number; readonly offset: string }) => `${l.partition}/${l.offset}`
const places = (ls: ReadonlyArray<{ readonly partition: number; readonly offset: string }>) =>
  ls.map(place).sort()
const countsOf = (ls: ReadonlyArray<IndexedLetter>) => {
  const counts: Record<string, number> = {}
  for (const l of ls) counts[l.kind] = (counts[l.kind] ?? 0) + 1
  return counts
}

const listed = Effect.flatMap(DeadLetterIndex, (index) =>
  Effect.map(index.list({}, 100, Option.none()), (page) => places(page.items))
)

const onTestDatabase = <A, E>(effect: Effect.Effect<A, E, DeadLetterIndex>) =>
  effect.pipe(Effect.provide(DeadLetterIndex.Default.pipe(Layer.provide(TestDatabase))))

describe("the dead-letter index's retention", () => {
  it.live(
    "a prune deletes the letters parked before the cutoff, chunk by chunk, with their counts; the rest stay",
    () =>
      onTestDatabase(
        Effect.gen(function* () {
          const index = yield* DeadLetterIndex
          yield* index.upsert([...expired, ...kept])
          expect(yield* listed).toEqual(places([...expired, ...kept]))

          // Chunks of 3: seven expired letters take three statements (3, 3, 1).
          expect(yield* index.prune(cutoff, 3)).toBe(expired.length)

          expect(yield* listed).toEqual(places(kept))
          expect(yield* index.counts({})).toEqual({ counts: countsOf(kept), capped: false })
          for (const l of expired) expect(Option.isNone(yield* index.get(l.partition, l.offset))).toBe(true)
          for (const l of kept) expect(Option.isSome(yield* index.get(l.partition, l.offset))).toBe(true)
          expect(yield* index.count({ _tag: "Filter" })).toEqual({ notReplayed: kept.length, replayed: 0 })

          // Nothing left to prune: a second one (another instance's, or the next check) is a no-op.
          expect(yield* index.prune(cutoff)).toBe(0)
          expect(yield* listed).toEqual(places(kept))
        })
      )
  )

  it.live("chunks end exactly at the chunk size: the loop stops on an empty statement", () =>
    onTestDatabase(
      Effect.gen(function* () {
        const index = yield* DeadLetterIndex
        const old = Array.from({ length: 6 }, (_, i) =>
          letter(2, i, "schema", new Date(now - (40 + i) * DAY))
        )
        yield* index.upsert([...old, letter(2, 6, "schema", new Date(now))])
        expect(yield* index.prune(cutoff, 3)).toBe(6)
        expect(yield* listed).toEqual(["2/6"])
        expect(yield* index.counts({})).toEqual({ counts: { schema: 1 }, capped: false })
      })
    )
  )

  it.live("the service prunes at start with dead_letters.retention", () =>
    onTestDatabase(
      Effect.gen(function* () {
        const index = yield* DeadLetterIndex
        yield* index.upsert([...expired, ...kept])
        yield* Layer.build(
          DeadLetterIndexer.layerRetention.pipe(
            Layer.provide(
              Layer.setConfigProvider(
                ConfigProvider.fromJson({ dead_letters: { retention: "30 days", retention_check: "1 hour" } })
              )
            )
          )
        )
        yield* eventually(
          "the expired letters are gone",
          Effect.map(listed, (l) => l.length === kept.length),
          10_000
        )
        expect(yield* listed).toEqual(places(kept))
        expect(yield* index.counts({})).toEqual({ counts: countsOf(kept), capped: false })
      }).pipe(Effect.scoped)
    )
  )

  it.live("a failing prune is logged and tried again at the next check; the fiber lives on", () =>
    Effect.gen(function* () {
      let calls = 0
      const failing = DeadLetterIndex.make({
        prune: () =>
          Effect.suspend(() =>
            ++calls === 1
              ? Effect.fail(new SqlError({ cause: new Error("connection refused"), message: "down" }))
              : Effect.die(new Error("a defect too"))
          )
      } as unknown as DeadLetterIndex)
      yield* Layer.build(
        DeadLetterIndexer.layerRetention.pipe(
          Layer.provide(Layer.succeed(DeadLetterIndex, failing)),
          Layer.provide(
            Layer.setConfigProvider(
              ConfigProvider.fromJson({ dead_letters: { retention_check: "50 millis" } })
            )
          )
        )
      )
      yield* eventually(
        "the prune ran again after failing",
        Effect.sync(() => calls >= 3),
        5_000
      )
    }).pipe(Effect.scoped)
  )

  it.live(
    "the indexer does not index again a letter the topic still keeps past the index's retention",
    () => {
      const topics = freshTopics()
      const parked = (n: number, at: Date) => {
        const m = toKafkaMessage(
          {
            kind: "schema",
            detail: `letter ${n}`,
            key: Buffer.from(`key-${n}`),
            value: Buffer.from(`{"n":${n}}`),
            source: { topic: topics.topic, partition: 0, offset: String(n) }
          },
          at
        )
        return { key: `key-${n}`, value: m.value, headers: m.headers }
      }
      return Effect.gen(function* () {
        const url = yield* createTestDatabase
        yield* createTopics(topics)
        yield* produce(
          topics.brokers,
          topics.dlqTopic,
          [
            parked(0, new Date(now - 40 * DAY)),
            parked(1, new Date(now - DAY)),
            parked(2, new Date(now - 31 * DAY)),
            parked(3, new Date(now))
          ],
          0
        )
        const keys = Effect.flatMap(DeadLetterIndex, (index) =>
          Effect.map(index.list({}, 100, Option.none()), (page) => page.items.map((l) => l.key!.data).sort())
        )
        const seen = yield* Effect.gen(function* () {
          yield* eventually(
            "the letters within retention are indexed",
            Effect.map(keys, (k) => k.length >= 2),
            60_000
          )
          // A later letter on the same partition shows that the expired ones were read past.
          yield* produce(topics.brokers, topics.dlqTopic, [parked(4, new Date(now))], 0)
          yield* eventually(
            "the later letter is indexed",
            Effect.map(keys, (k) => k.includes("key-4")),
            60_000
          )
          return yield* keys
        }).pipe(
          Effect.provide(
            App.layerDeadLetters(KafkaClient.Default).pipe(
              Layer.provideMerge(App.layerCore),
              Layer.provideMerge(Database.layer({ url: Redacted.make(url), maxConnections: 4 })),
              Layer.provide(testConfig(topics, { dead_letters: { retention: "30 days" } }))
            )
          )
        )
        expect(seen).toEqual(["key-1", "key-3", "key-4"])
      }).pipe(Effect.scoped)
    },
    120_000
  )

  it.effect("is 30 days by default, checked hourly; DEAD_LETTERS_RETENTION sets it", () =>
    Effect.gen(function* () {
      const load = loadDefaults
      const defaults = Either.getOrThrow(yield* load({}))
      expect(Duration.toMillis(defaults.deadLetters.retention)).toBe(30 * DAY)
      expect(Duration.toMillis(defaults.deadLetters.retentionCheck)).toBe(60 * 60 * 1000)
      const set = Either.getOrThrow(yield* load({ DEAD_LETTERS_RETENTION: "7 days" }))
      expect(Duration.toMillis(set.deadLetters.retention)).toBe(7 * DAY)
      const wrong = yield* load({ DEAD_LETTERS_RETENTION: "0 seconds" })
      expect(Either.isLeft(wrong)).toBe(true)
    })
  )
})
