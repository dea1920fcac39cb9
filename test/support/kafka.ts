/** Kafka helpers for tests: fresh topics and group per test, producing, and reading back. */
import { randomBytes } from "node:crypto"
import { ConfigProvider, Effect, Layer } from "effect"
import { Kafka, logLevel, Partitioners, type IHeaders, type KafkaMessage } from "kafkajs"
import { inject } from "vitest"

export interface TestTopics {
  readonly brokers: string
  readonly topic: string
  readonly dlqTopic: string
  readonly groupId: string
}

export const freshTopics = (): TestTopics => {
  const id = randomBytes(5).toString("hex")
  return {
    brokers: inject("kafkaBrokers"),
    topic: `orders-${id}`,
    dlqTopic: `orders-${id}.dlq`,
    groupId: `order-service-${id}`
  }
}

export const kafkaFor = (brokers: string) =>
  new Kafka({ clientId: "test", brokers: brokers.split(","), logLevel: logLevel.NOTHING })

/** Create a test's topics (the service would too, but a test may produce before it starts). */
export const createTopics = (topics: TestTopics, partitions = 3) =>
  Effect.promise(async () => {
    const admin = kafkaFor(topics.brokers).admin()
    await admin.connect()
    try {
      await admin.createTopics({
        waitForLeaders: true,
        topics: [topics.topic, topics.dlqTopic].map((topic) => ({
          topic,
          numPartitions: partitions,
          replicationFactor: 1
        }))
      })
    } finally {
      await admin.disconnect()
    }
  })

/** Config for the service under test: its topics, quick retries, and small caches. */
export const testConfig = (topics: TestTopics, extra: Record<string, unknown> = {}) =>
  Layer.setConfigProvider(
    ConfigProvider.fromJson({
      kafka: {
        brokers: topics.brokers,
        topic: topics.topic,
        dlq_topic: topics.dlqTopic,
        group_id: topics.groupId,
        partitions: 3,
        replication_factor: 1
      },
      ingest: { retry_base: "100 millis", retry_max: "1 seconds", max_message_bytes: 65536 },
      cache: { max_entries: 1000, warm_count: 0 },
      ...extra
    })
  )

export interface Outgoing {
  readonly key?: string | null
  readonly value: Buffer | string | null
  readonly headers?: IHeaders
}

/** Produce messages in order to one partition (so their relative order is kept) or spread by key. */
export const produce = (
  brokers: string,
  topic: string,
  messages: ReadonlyArray<Outgoing>,
  partition?: number
) =>
  Effect.promise(async () => {
    const producer = kafkaFor(brokers).producer({ createPartitioner: Partitioners.DefaultPartitioner })
    await producer.connect()
    try {
      for (let i = 0; i < messages.length; i += 1000) {
        await producer.send({
          topic,
          acks: -1,
          messages: messages.slice(i, i + 1000).map((m) => ({
            key: m.key ?? null,
            value: m.value,
            ...(m.headers ? { headers: m.headers } : {}),
            ...(partition === undefined ? {} : { partition })
          }))
        })
      }
    } finally {
      await producer.disconnect()
    }
  })

/** Read a whole topic from the beginning (committed records only) until `count` arrived or time ran out. */
export const readTopic = (brokers: string, topic: string, count: number, timeoutMs = 20_000) =>
  Effect.promise(async () => {
    const kafka = kafkaFor(brokers)
    const consumer = kafka.consumer({ groupId: `reader-${randomBytes(5).toString("hex")}` })
    const seen: Array<KafkaMessage & { partition: number }> = []
    await consumer.connect()
    await consumer.subscribe({ topics: [topic], fromBeginning: true })
    await consumer.run({
      eachMessage: async ({ message, partition }) => void seen.push({ ...message, partition })
    })
    const deadline = Date.now() + timeoutMs
    while (seen.length < count && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200))
    // A little longer, so that messages beyond the expected count would be seen too.
    await new Promise((r) => setTimeout(r, 500))
    await consumer.disconnect()
    return seen
  })

/** The group's committed offsets and the topic's end offsets, by partition. */
export const offsets = (brokers: string, topic: string, groupId: string) =>
  Effect.promise(async () => {
    const admin = kafkaFor(brokers).admin()
    await admin.connect()
    try {
      const [committed] = await admin.fetchOffsets({ groupId, topics: [topic] })
      const ends = await admin.fetchTopicOffsets(topic)
      return {
        committed: Object.fromEntries(
          (committed?.partitions ?? []).map((p) => [p.partition, Number(p.offset)])
        ),
        ends: Object.fromEntries(ends.map((p) => [p.partition, Number(p.high)]))
      }
    } finally {
      await admin.disconnect()
    }
  })

/** Poll `check` until it returns true or the time runs out; then fail with `what`. */
export const eventually = <E, R>(what: string, check: Effect.Effect<boolean, E, R>, timeoutMs = 30_000) =>
  Effect.gen(function* () {
    const deadline = Date.now() + timeoutMs
    while (Date.now() < deadline) {
      if (yield* check) return
      yield* Effect.sleep("200 millis")
    }
    return yield* Effect.die(new Error(`timed out waiting until ${what}`))
  })

export const header = (message: KafkaMessage, name: string): string | undefined => {
  const value = message.headers?.[name]
  return value === undefined ? undefined : Buffer.isBuffer(value) ? value.toString("utf8") : String(value)
}
