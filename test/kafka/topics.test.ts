/**
 * The topics the service creates at start-up when they are missing: the dead-letter topic takes
 * twice Kafka's default message size, so that any message the orders topic accepted is parked
 * whole, with the headers saying why.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { ConfigResourceTypes } from "kafkajs"
import { KafkaClient } from "../../src/kafka/KafkaClient.ts"
import { toKafkaMessage } from "../../src/kafka/DeadLetters.ts"
import { freshTopics, kafkaFor, produce, testConfig } from "../support/kafka.ts"

const MAX_MESSAGE_BYTES = "max.message.bytes"

/** The topic's `max.message.bytes`, as the broker describes it (its own default when not set). */
const maxMessageBytes = (brokers: string, topic: string) =>
  Effect.promise(async () => {
    const admin = kafkaFor(brokers).admin()
    await admin.connect()
    try {
      const { resources } = await admin.describeConfigs({
        includeSynonyms: false,
        resources: [{ type: ConfigResourceTypes.TOPIC, name: topic, configNames: [MAX_MESSAGE_BYTES] }]
      })
      const value = resources[0]?.configEntries.find((e) => e.configName === MAX_MESSAGE_BYTES)?.configValue
      if (value === undefined) throw new Error(`${topic} has no ${MAX_MESSAGE_BYTES}`)
      return Number(value)
    } finally {
      await admin.disconnect()
    }
  })

describe("the topics the service creates", () => {
  it.live(
    "the dead-letter topic is created with max.message.bytes of 2 MiB: the largest message the orders topic accepts is parked whole, with its headers",
    () =>
      Effect.gen(function* () {
        const topics = freshTopics()
        // Neither topic exists: the client creates both as it starts.
        yield* Layer.build(KafkaClient.Default.pipe(Layer.provide(testConfig(topics))))

        expect(yield* maxMessageBytes(topics.brokers, topics.dlqTopic)).toBe(2 * 1024 * 1024)
        const ordersMax = yield* maxMessageBytes(topics.brokers, topics.topic)
        expect(ordersMax).toBeLessThan(2 * 1024 * 1024)

        // A message as large as the orders topic takes (its record batch has some overhead)...
        const value = Buffer.alloc(ordersMax - 200, 0x61)
        yield* produce(topics.brokers, topics.topic, [{ key: "large", value }], 0)
        // ...fits on the dead-letter topic whole, with the headers that say why it was parked.
        const letter = toKafkaMessage(
          {
            kind: "too_large",
            detail: `the message is ${value.length} bytes, more than ingest.max_message_bytes`,
            key: Buffer.from("large"),
            value,
            source: { topic: topics.topic, partition: 0, offset: "0" }
          },
          new Date()
        )
        yield* produce(topics.brokers, topics.dlqTopic, [
          { key: "large", value: letter.value, headers: letter.headers }
        ])
      }).pipe(Effect.scoped),
    60_000
  )
})
