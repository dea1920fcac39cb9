import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Schedule } from "effect"
import { Kafka, logLevel, Partitioners, type Admin, type Consumer, type Producer } from "kafkajs"
import * as LocalKafka from "../src/local/LocalKafka.ts"
import { readFixture, readFixtureJson, validFixtureNames } from "./support/fixtures.ts"
import { retryRetriable } from "./support/kafka.ts"

interface Received {
  readonly partition: number
  readonly offset: string
  readonly key: string
  readonly value: string
  readonly headers: Readonly<Record<string, string>>
}

// Clients are scoped like the service's own: disconnected before the cluster stops.
const clients = (bootstrapServers: string) => {
  const kafka = new Kafka({
    clientId: "local-kafka-test",
    brokers: bootstrapServers.split(","),
    // The fault test provokes connection errors on purpose; assertions say what matters.
    logLevel: logLevel.NOTHING,
    retry: { retries: 10, initialRetryTime: 200 }
  })
  const admin = Effect.acquireRelease(
    Effect.promise(async () => {
      const admin: Admin = kafka.admin()
      await admin.connect()
      return admin
    }),
    (admin) => Effect.promise(() => admin.disconnect())
  )
  const producer = Effect.acquireRelease(
    Effect.promise(async () => {
      const producer: Producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner })
      await producer.connect()
      return producer
    }),
    (producer) => Effect.promise(() => producer.disconnect())
  )
  /** A consumer in `groupId` that commits each batch after taking it, as the service does. */
  const consumer = (groupId: string, topic: string) =>
    Effect.gen(function* () {
      const received: Array<Received> = []
      const consumer: Consumer = yield* Effect.acquireRelease(
        Effect.promise(async () => {
          const consumer = kafka.consumer({ groupId, heartbeatInterval: 500, sessionTimeout: 10_000 })
          await consumer.connect()
          return consumer
        }),
        (consumer) => Effect.promise(() => consumer.disconnect())
      )
      yield* Effect.promise(async () => {
        await consumer.subscribe({ topic, fromBeginning: true })
        await consumer.run({
          autoCommit: false,
          eachBatch: async ({ batch }) => {
            for (const message of batch.messages) {
              received.push({
                partition: batch.partition,
                offset: message.offset,
                key: message.key?.toString("utf8") ?? "",
                value: message.value?.toString("utf8") ?? "",
                headers: Object.fromEntries(
                  Object.entries(message.headers ?? {}).map(([k, v]) => [k, String(v)])
                )
              })
            }
            await consumer.commitOffsets([
              { topic, partition: batch.partition, offset: (BigInt(batch.lastOffset()) + 1n).toString() }
            ])
          }
        })
      })
      return received
    })
  return { admin, producer, consumer }
}

/** A client call named in the failure, so a red test says which step broke. */
const step = <A>(name: string, call: () => Promise<A>) =>
  Effect.tryPromise({
    try: call,
    catch: (cause) =>
      new Error(`${name}: ${cause instanceof Error ? cause.message : String(cause)}`, { cause })
  }).pipe(Effect.orDie)

/** Retries `check` (which fails by throwing) every 200 ms until it passes or `within` runs out. */
const eventually = <A>(within: Duration.DurationInput, check: () => Promise<A> | A) =>
  Effect.tryPromise({ try: async () => check(), catch: (assertion) => assertion }).pipe(
    Effect.retry(Schedule.spaced("200 millis").pipe(Schedule.upTo(within))),
    Effect.orDie
  )

const orders = validFixtureNames().map((name) => ({
  name,
  uid: (readFixtureJson(name) as { order_uid: string }).order_uid,
  bytes: readFixture(name)
}))

const sum = (offsets: ReadonlyArray<{ readonly offset: string }>) =>
  offsets.reduce((total, o) => total + Math.max(0, Number(o.offset)), 0)

describe("a local Kafka started from Maven Central jars", () => {
  it.live(
    "one broker takes orders with headers and hands them to a consumer group that commits",
    () =>
      Effect.gen(function* () {
        const kafka = yield* LocalKafka.make({ brokers: 1 })
        expect(kafka.bootstrapServers).toMatch(/^127\.0\.0\.1:\d+$/)
        const { admin, producer, consumer } = clients(kafka.bootstrapServers)
        const topic = "orders"
        const adminClient = yield* admin

        const created = yield* step("create the topic", () =>
          adminClient.createTopics({ topics: [{ topic, numPartitions: 3 }], waitForLeaders: true })
        )
        expect(created).toBe(true)
        // The metadata names each partition's leader (what `waitForLeaders` waits for) a moment
        // before that broker serves it, and kafkajs' admin does not retry NOT_LEADER_FOR_PARTITION.
        const empty = yield* step("read offsets", () =>
          retryRetriable("read offsets", () => adminClient.fetchTopicOffsets(topic))
        )
        expect(empty.map((p) => p.high)).toEqual(["0", "0", "0"])

        const producerClient = yield* producer
        yield* step("produce the orders", () =>
          producerClient.send({
            topic,
            acks: -1,
            messages: orders.map((order) => ({
              key: order.uid,
              value: order.bytes,
              headers: { "content-type": "application/json", fixture: order.name }
            }))
          })
        )
        const written = yield* step("read offsets", () =>
          retryRetriable("read offsets", () => adminClient.fetchTopicOffsets(topic))
        )
        expect(written.reduce((n, p) => n + Number(p.high), 0)).toBe(orders.length)

        const received = yield* consumer("order-service", topic)
        yield* eventually("30 seconds", () => expect(received).toHaveLength(orders.length))
        expect(
          received
            .map((r) => ({ key: r.key, value: r.value, headers: r.headers }))
            .sort((a, b) => a.key.localeCompare(b.key))
        ).toEqual(
          orders
            .map((order) => ({
              key: order.uid,
              value: order.bytes.toString("utf8"),
              headers: { "content-type": "application/json", fixture: order.name }
            }))
            .sort((a, b) => a.key.localeCompare(b.key))
        )

        // The group's committed offsets reach the end of every partition.
        yield* eventually("10 seconds", async () => {
          const [committed] = await adminClient.fetchOffsets({ groupId: "order-service", topics: [topic] })
          expect(sum(committed!.partitions)).toBe(orders.length)
        })
      }).pipe(Effect.scoped),
    120_000
  )

  it.live(
    "three brokers keep taking and delivering acks=all writes while the partition leader is down",
    () =>
      Effect.gen(function* () {
        const kafka = yield* LocalKafka.make({ brokers: 3 })
        expect(kafka.brokers).toHaveLength(3)
        const { admin, producer, consumer } = clients(kafka.bootstrapServers)
        const topic = "orders"
        const adminClient = yield* admin
        // A cluster that has just formed may not know every broker's metadata yet: try again.
        yield* eventually("30 seconds", () =>
          adminClient.createTopics({
            topics: [{ topic, numPartitions: 1, replicationFactor: 3 }],
            waitForLeaders: true
          })
        )
        const partition = () =>
          step("read partition metadata", async () => {
            const metadata = await adminClient.fetchTopicMetadata({ topics: [topic] })
            return metadata.topics[0]!.partitions[0]!
          })
        const before = yield* eventually("30 seconds", async () => {
          const p = await Effect.runPromise(partition())
          expect(p.replicas).toHaveLength(3)
          expect(p.isr).toHaveLength(3)
          return p
        })

        const producerClient = yield* producer
        // kafkajs keeps sending to a dead leader until the controller has fenced it, and may give
        // up first: like the service, the test retries a send that was not acknowledged.
        const send = (uid: string) =>
          step(`produce ${uid}`, () =>
            producerClient.send({ topic, acks: -1, messages: [{ key: uid, value: orders[0]!.bytes }] })
          ).pipe(Effect.retry(Schedule.spaced("500 millis").pipe(Schedule.upTo("30 seconds"))))
        // Delivery is at least once: a batch whose commit did not land before a crash or a
        // rebalance comes again. What must hold is that every acknowledged write arrives, in order,
        // and that the group's committed offset reaches the end of the partition.
        const committedToTheEnd = eventually("30 seconds", async () => {
          const [end] = await adminClient.fetchTopicOffsets(topic)
          const [committed] = await adminClient.fetchOffsets({ groupId: "order-service", topics: [topic] })
          expect(committed!.partitions[0]!.offset).toBe(end!.high)
        })

        yield* send("before-the-crash")
        // The group exists before the crash: with two of three brokers the offsets topic
        // (replication factor 3) could not be created.
        const received = yield* consumer("order-service", topic)
        const delivered = () => [...new Set(received.map((r) => r.key))]
        yield* eventually("30 seconds", () => expect(delivered()).toEqual(["before-the-crash"]))
        yield* committedToTheEnd

        const leader = before.leader
        yield* kafka.killBroker(leader)
        expect(yield* kafka.isRunning(leader)).toBe(false)
        // Once fenced (broker.session.timeout.ms), the killed broker's partition moves to a replica in sync.
        yield* eventually("30 seconds", async () => {
          const metadata = await adminClient.fetchTopicMetadata({ topics: [topic] })
          const during = metadata.topics[0]!.partitions[0]!
          expect(during.leader).not.toBe(leader)
          expect(during.isr).not.toContain(leader)
          expect(during.isr).toHaveLength(2)
        })

        yield* send("while-the-leader-is-down")
        yield* eventually("30 seconds", () =>
          expect(delivered()).toEqual(["before-the-crash", "while-the-leader-is-down"])
        )
        yield* committedToTheEnd

        yield* kafka.restartBroker(leader)
        expect(yield* kafka.isRunning(leader)).toBe(true)
        yield* eventually("30 seconds", async () => {
          const metadata = await adminClient.fetchTopicMetadata({ topics: [topic] })
          expect([...metadata.topics[0]!.partitions[0]!.isr].sort()).toEqual([0, 1, 2])
        })
        yield* send("after-the-restart")
        yield* eventually("30 seconds", () =>
          expect(delivered()).toEqual(["before-the-crash", "while-the-leader-is-down", "after-the-restart"])
        )
        yield* committedToTheEnd
      }).pipe(Effect.scoped),
    120_000
  )
})
