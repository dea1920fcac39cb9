import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Either, Layer, Metric, Option, Redacted, Schedule } from "effect"
import { findStored, storedCount } from "../support/orders.ts"
import { OrderCache } from "../../src/cache/OrderCache.ts"
import { IngestMetrics } from "../../src/ingest/IngestPipeline.ts"
import * as Database from "../../src/db/Database.ts"

import { DeadLetterHeaders, DeadLetters, type DeadLetter } from "../../src/kafka/DeadLetters.ts"
import { KafkaClient } from "../../src/kafka/KafkaClient.ts"
import * as EmbeddedPostgres from "../../src/local/EmbeddedPostgres.ts"
import type { OrderJson } from "../../src/orders/Order.ts"
import { decodeOrderValue, orderToJson } from "../../src/orders/OrderDecoder.ts"
import { OrderRepository } from "../../src/orders/OrderRepository.ts"
import { sampleOrders } from "../support/arbitraries.ts"
import { TestDatabase } from "../support/database.ts"
import {
  expectedRejectionKind,
  invalidFixtureNames,
  readFixture,
  readFixtureJson
} from "../support/fixtures.ts"
import {
  eventually,
  freshTopics,
  header,
  offsets,
  produce,
  readTopic,
  testConfig,
  type Outgoing,
  type TestTopics
} from "../support/kafka.ts"

import { ingestStack } from "../support/app.ts"

/** Batch attempts that failed and were retried, in this process so far. */
const failedAttempts = Effect.map(Metric.value(IngestMetrics.retries), (state) => state.count)
const batchesInFlight = Effect.map(Metric.value(IngestMetrics.inFlight), (state) => state.value)

const allCommitted = (topics: TestTopics) =>
  Effect.map(offsets(topics.brokers, topics.topic, topics.groupId), ({ committed, ends }) =>
    Object.entries(ends).every(([p, end]) => end === 0 || committed[Number(p)] === end)
  )

const asMessage = (order: OrderJson): Outgoing => ({ key: order.order_uid, value: JSON.stringify(order) })

describe("ingestion from a real Kafka broker into a real PostgreSQL", () => {
  it.live(
    "valid orders produced to the topic are stored, exactly as sent, and their offsets committed",
    () => {
      const topics = freshTopics()
      const orders = sampleOrders(300, 11, "ingest")
      return Effect.gen(function* () {
        yield* produce(topics.brokers, topics.topic, orders.map(asMessage))
        yield* eventually(
          "300 orders are stored",
          Effect.map(storedCount, (n) => n === 300)
        )
        yield* eventually("every offset is committed", allCommitted(topics))
        const stored = yield* Effect.forEach(orders, (o) => findStored(o.order_uid))
        expect(stored.map((s) => Option.map(s, orderToJson))).toStrictEqual(orders.map(Option.some))
        const cache = yield* OrderCache
        expect(Option.isSome(yield* cache.get(orders[5]!.order_uid))).toBe(true)
      }).pipe(Effect.provide(ingestStack(topics, TestDatabase)))
    },
    90_000
  )

  it.live(
    "each invalid message lands on the dead-letter topic with its kind, and the valid ones around it are stored",
    () => {
      const topics = freshTopics()
      const valid = sampleOrders(12, 12, "around")
      const invalid = invalidFixtureNames().map((name) => ({ name, bytes: readFixture(name) }))
      const tooLarge = Buffer.from(JSON.stringify({ ...valid[0], padding: "x".repeat(70_000) }))
      const messages: Array<Outgoing> = []
      invalid.forEach((f, i) => {
        messages.push(asMessage(valid[i]!))
        messages.push({ key: `bad-${i}`, value: f.bytes, headers: { "x-origin": f.name } })
      })
      messages.push({ key: "too-large", value: tooLarge, headers: { "x-origin": "too-large" } })
      messages.push(...valid.slice(invalid.length).map(asMessage))
      return Effect.gen(function* () {
        // One partition, so the invalid ones sit between valid ones in the same stream.
        yield* produce(topics.brokers, topics.topic, messages, 0)
        yield* eventually(
          "the valid orders are stored",
          Effect.map(storedCount, (n) => n === valid.length)
        )
        yield* eventually("every offset is committed", allCommitted(topics))
        const letters = yield* readTopic(topics.brokers, topics.dlqTopic)
        expect(letters).toHaveLength(invalid.length + 1)
        const byOrigin = new Map(letters.map((l) => [header(l, "x-origin"), l]))
        // A fresh topic, one partition, one send: each message's offset is its place in `messages`.
        const offsetOf = (origin: string) => messages.findIndex((m) => m.headers?.["x-origin"] === origin)
        for (const f of invalid) {
          const letter = byOrigin.get(f.name)
          expect(letter, f.name).toBeDefined()
          expect(header(letter!, DeadLetterHeaders.kind), f.name).toBe(expectedRejectionKind[f.name])
          expect(header(letter!, DeadLetterHeaders.detail)!.length, f.name).toBeGreaterThan(5)
          expect(header(letter!, DeadLetterHeaders.topic)).toBe(topics.topic)
          expect(header(letter!, DeadLetterHeaders.partition)).toBe("0")
          expect(header(letter!, DeadLetterHeaders.offset), f.name).toBe(String(offsetOf(f.name)))
          // The original bytes and key, untouched.
          expect(Buffer.compare(letter!.value!, f.bytes), f.name).toBe(0)
          expect(letter!.key!.toString()).toMatch(/^bad-\d+$/)
        }
        expect(header(byOrigin.get("too-large")!, DeadLetterHeaders.kind)).toBe("too_large")
        expect(header(byOrigin.get("too-large")!, DeadLetterHeaders.offset)).toBe(
          String(offsetOf("too-large"))
        )
      }).pipe(Effect.provide(ingestStack(topics, TestDatabase)))
    },
    90_000
  )

  it.live(
    "an order that arrives already stored (another consumer stored it, then lost its partition before committing) is cached by the one that commits it",
    () => {
      const topics = freshTopics()
      const orders = sampleOrders(3, 13, "stored-before")
      return Effect.gen(function* () {
        // Stored behind this instance's back, as by a consumer whose commit failed in a rebalance.
        const repository = yield* OrderRepository
        yield* repository.insertBatch(orders.map((o) => Either.getOrThrow(decodeOrderValue(o))))
        const cache = yield* OrderCache
        const cached = (uid: string) => Effect.map(cache.get(uid), Option.isSome)
        expect(yield* cached(orders[0]!.order_uid)).toBe(false)

        yield* produce(topics.brokers, topics.topic, orders.map(asMessage))
        yield* eventually("every offset is committed", allCommitted(topics))
        expect(yield* storedCount).toBe(3)
        expect(yield* Effect.forEach(orders, (o) => cached(o.order_uid))).toEqual([true, true, true])
      }).pipe(Effect.provide(ingestStack(topics, TestDatabase)))
    },
    90_000
  )

  it.live(
    "a redelivered order is stored once; a different order under the same uid is dead-lettered as a conflict",
    () => {
      const topics = freshTopics()
      const original = readFixtureJson("valid/model.json") as OrderJson
      const changed = { ...original, customer_id: "someone-else" }
      return Effect.gen(function* () {
        yield* produce(
          topics.brokers,
          topics.topic,
          [asMessage(original), asMessage(original), asMessage(changed)],
          1
        )
        yield* eventually("every offset is committed", allCommitted(topics))
        expect(yield* storedCount).toBe(1)
        const stored = Option.getOrThrow(yield* findStored(original.order_uid))
        expect(stored.customer_id).toBe("test")
        const letters = yield* readTopic(topics.brokers, topics.dlqTopic)
        expect(letters.map((l) => header(l, DeadLetterHeaders.kind))).toEqual(["conflict"])
        expect(JSON.parse(letters[0]!.value!.toString())).toStrictEqual(changed)
      }).pipe(Effect.provide(ingestStack(topics, TestDatabase)))
    },
    90_000
  )

  it.live(
    "an order PostgreSQL refuses is dead-lettered with the reason, and the orders around it are stored",
    () => {
      const topics = freshTopics()
      const orders = sampleOrders(20, 41, "poison")
      const poison = {
        ...orders[10]!,
        items: orders[10]!.items.map((i, n) => (n === 0 ? { ...i, name: "boom" } : i))
      }
      orders[10] = poison
      return Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        // A rule the database has and the decoder does not: the batch fails as a whole first.
        yield* sql`ALTER TABLE items ADD CONSTRAINT no_boom CHECK (name <> 'boom')`
        yield* produce(topics.brokers, topics.topic, orders.map(asMessage), 0)
        yield* eventually("every offset is committed", allCommitted(topics))
        expect(yield* storedCount).toBe(19)
        const letters = yield* readTopic(topics.brokers, topics.dlqTopic)
        expect(letters).toHaveLength(1)
        expect(letters[0]!.key!.toString()).toBe(poison.order_uid)
        expect(header(letters[0]!, DeadLetterHeaders.kind)).toBe("schema")
        expect(header(letters[0]!, DeadLetterHeaders.detail)).toMatch(/database refused the order.*no_boom/)
      }).pipe(Effect.provide(ingestStack(topics, TestDatabase)))
    },
    90_000
  )

  it.live(
    "while PostgreSQL is down nothing is committed, and afterwards every order is stored exactly once",
    () => {
      const topics = freshTopics()
      const first = sampleOrders(400, 21, "before")
      const second = sampleOrders(600, 22, "during")
      return Effect.gen(function* () {
        const pg = yield* EmbeddedPostgres.make()
        const database = Database.layer({ url: Redacted.make(pg.url()), maxConnections: 4 })
        yield* Effect.gen(function* () {
          yield* produce(topics.brokers, topics.topic, first.map(asMessage))
          yield* eventually(
            "the first orders are stored",
            Effect.map(storedCount, (n) => n === 400)
          )
          yield* eventually("their offsets are committed", allCommitted(topics))
          const before = yield* offsets(topics.brokers, topics.topic, topics.groupId)

          const failedBefore = yield* failedAttempts
          yield* pg.pause
          yield* produce(topics.brokers, topics.topic, second.map(asMessage))
          // Evidence that it met the outage: attempts to store the new orders failed, and were
          // tried again (in place, holding the partitions) rather than given up or skipped.
          yield* eventually(
            "attempts to store during the outage fail and are tried again",
            Effect.map(failedAttempts, (n) => n >= failedBefore + 2),
            30_000
          )
          const during = yield* offsets(topics.brokers, topics.topic, topics.groupId)
          expect(during.committed).toEqual(before.committed)
          // What an operator sees: batches held, waiting out the outage.
          expect(yield* batchesInFlight).toBeGreaterThanOrEqual(1)
          expect(Object.values(during.ends).reduce((a, b) => a + b, 0)).toBe(1000)

          yield* pg.resume
          yield* eventually(
            "every order is stored",
            Effect.map(storedCount, (n) => n === 1000),
            60_000
          )
          yield* eventually("every offset is committed", allCommitted(topics), 30_000)
          yield* eventually(
            "no batch is in flight any more",
            Effect.map(batchesInFlight, (n) => n === 0)
          )
          const sql = yield* SqlClient.SqlClient
          const [row] = yield* sql<{ n: string; items: string }>`
            SELECT count(DISTINCT order_uid) AS n, (SELECT count(*) FROM items) AS items FROM orders`
          expect(Number(row!.n)).toBe(1000)
          const expectedItems = [...first, ...second].reduce((n, o) => n + o.items.length, 0)
          expect(Number(row!.items)).toBe(expectedItems)
          const letters = yield* readTopic(topics.brokers, topics.dlqTopic)
          expect(letters).toHaveLength(0)
        }).pipe(Effect.provide(ingestStack(topics, database)))
      }).pipe(Effect.scoped)
    },
    150_000
  )

  it.live(
    "a dead-letter transaction tried again after its commit went through (the reply was lost) parks nothing twice",
    () => {
      const topics = freshTopics()
      const letter = (offset: string): DeadLetter => ({
        kind: "invalid_json",
        detail: "the message is not JSON",
        key: Buffer.from(`bad-${offset}`),
        value: Buffer.from("{"),
        source: { topic: topics.topic, partition: 0, offset }
      })
      const through = (nextOffset: string) => [{ topic: topics.topic, partition: 0, nextOffset }]
      return Effect.gen(function* () {
        yield* produce(topics.brokers, topics.topic, [{ value: "{" }, { value: "{" }], 0)
        // The group's coordinator is found (and loaded) before the first transaction names it.
        yield* offsets(topics.brokers, topics.topic, topics.groupId)
        const deadLetters = yield* DeadLetters
        // As the pipeline does: while a new group's coordinator settles in, tried again, asking first.
        const settle = (letters: ReadonlyArray<DeadLetter>, nextOffset: string, maybeSettled: boolean) => {
          let attempts = 0
          return Effect.suspend(() =>
            deadLetters.settle(letters, through(nextOffset), { maybeSettled: maybeSettled || attempts++ > 0 })
          ).pipe(Effect.retry({ times: 20, schedule: Schedule.spaced("250 millis") }))
        }
        yield* settle([letter("0")], "1", false)
        // After a failure the lane's producer is replaced, and its start waits until the
        // coordinator has completed the transaction: by then the group's offset shows it.
        yield* eventually(
          "the group's offset shows the transaction",
          Effect.map(
            offsets(topics.brokers, topics.topic, topics.groupId),
            ({ committed }) => committed[0] === 1
          )
        )
        // Tried again as after a lost reply: the group's offset shows it went through.
        yield* settle([letter("0")], "1", true)
        // Tried again after a failure before the commit: the offset has not moved, so it is sent.
        yield* settle([letter("1")], "2", true)
        const letters = yield* readTopic(topics.brokers, topics.dlqTopic)
        expect(letters.map((l) => l.key!.toString())).toEqual(["bad-0", "bad-1"])
        const { committed } = yield* offsets(topics.brokers, topics.topic, topics.groupId)
        expect(committed[0]).toBe(2)
      }).pipe(
        Effect.provide(
          DeadLetters.Default.pipe(Layer.provide(KafkaClient.Default), Layer.provide(testConfig(topics)))
        )
      )
    },
    90_000
  )
})
