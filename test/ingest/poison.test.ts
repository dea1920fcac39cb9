/**
 * On the real stack — broker, PostgreSQL, the service's whole composition — a message that once
 * stopped all ingestion (JSON nested 50,000 levels deep) is parked with its reason, and the valid
 * order behind it on the same partition is stored and served.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import * as App from "../../src/App.ts"
import { KafkaClient } from "../../src/kafka/KafkaClient.ts"
import { DeadLetterHeaders } from "../../src/kafka/DeadLetters.ts"
import type { OrderJson } from "../../src/orders/Order.ts"
import { baseUrl } from "../support/app.ts"
import { TestDatabase } from "../support/database.ts"
import { readFixtureJson } from "../support/fixtures.ts"
import {
  createTopics,
  eventually,
  freshTopics,
  header,
  offsets,
  produce,
  readTopic,
  testConfig
} from "../support/kafka.ts"

describe("a poison message on the real stack", () => {
  it.live(
    "JSON nested 50,000 levels deep is parked as schema with its reason; the valid order behind it is served",
    () => {
      const topics = freshTopics()
      const order = readFixtureJson("valid/model.json") as OrderJson
      const deep = "[".repeat(50_000) + "]".repeat(50_000)
      const deepInAField = JSON.stringify({ ...order, order_uid: "deep-name" }).replace(
        JSON.stringify(order.delivery.name),
        () => deep
      )
      const app = App.layerServices(KafkaClient.Default).pipe(
        Layer.provide(TestDatabase),
        Layer.provide(
          testConfig(topics, {
            http: { host: "127.0.0.1", port: 0, access_log: false, shutdown_timeout: "2 seconds" },
            // The service's default limit: these messages are large, but not too large.
            ingest: { retry_base: "100 millis", retry_max: "1 seconds", max_message_bytes: 1024 * 1024 }
          })
        )
      )
      return Effect.gen(function* () {
        yield* createTopics(topics)
        // One partition, in this order: the poison ones first, the valid order behind them.
        yield* produce(
          topics.brokers,
          topics.topic,
          [
            { key: "deep", value: deep },
            { key: "deep-name", value: deepInAField },
            { key: order.order_uid, value: JSON.stringify(order) }
          ],
          0
        )
        const url = yield* baseUrl
        yield* eventually(
          "the valid order is served",
          Effect.promise(() => fetch(`${url}/order/${order.order_uid}`).then((r) => r.status === 200)),
          60_000
        )
        const served = yield* Effect.promise(() =>
          fetch(`${url}/order/${order.order_uid}`).then((r) => r.json())
        )
        expect(served).toStrictEqual(order)

        // Stored comes before parked and committed (one Kafka transaction, after the database's).
        yield* eventually(
          "all three messages are committed",
          Effect.map(
            offsets(topics.brokers, topics.topic, topics.groupId),
            ({ committed }) => committed[0] === 3
          ),
          60_000
        )
        const letters = yield* readTopic(topics.brokers, topics.dlqTopic)
        expect(letters.map((l) => [l.key?.toString(), header(l, DeadLetterHeaders.kind)])).toEqual([
          ["deep", "schema"],
          ["deep-name", "schema"]
        ])
        for (const letter of letters) {
          expect(header(letter, DeadLetterHeaders.detail)).toMatch(/nests deeper than 10 levels/)
          expect(letter.value!.byteLength).toBeGreaterThanOrEqual(100_000)
        }
        expect(letters.map((l) => header(l, DeadLetterHeaders.offset))).toEqual(["0", "1"])
      }).pipe(Effect.provide(app))
    },
    120_000
  )
})
