/** Kafka helpers for tests: fresh topics and group per test, producing, and reading back. */
import { randomBytes } from "node:crypto"
import { ConfigProvider, Effect, Layer } from "effect"
import { Kafka, logLevel, Partitioners, type IHeaders, type KafkaMessage } from "kafkajs"
import { inject } from "vitest"
import "../../src/kafka/kafkajsRequestQueue.ts"

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

/**
 * Create a test's topics (the service would too, but a test may produce before it starts), and
 * wait until every partition's leader serves it: kafkajs' `waitForLeaders` only waits until the
 * metadata names one.
 */
export const createTopics = (topics: TestTopics, partitions = 3) =>
  Effect.promise(async () => {
    const kafka = kafkaFor(topics.brokers)
    const admin = kafka.admin()
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
    for (const topic of [topics.topic, topics.dlqTopic]) await topicEnds(kafka, topic)
  })

/**
 * Config for the service under test: its topics, quick retries, and small caches. Letters are kept
 * in the index for a century, so that the fixed dates tests park them at never expire (a test of
 * retention gives its own `dead_letters.retention`). `extra.kafka` and `extra.dead_letters` add to
 * these sections; any other section of `extra` replaces its default.
 */
export const testConfig = (topics: TestTopics, extra: Record<string, unknown> = {}) =>
  Layer.setConfigProvider(
    ConfigProvider.fromJson({
      ingest: { retry_base: "100 millis", retry_max: "1 seconds", max_message_bytes: 65536 },
      cache: { max_entries: 1000, warm_count: 0 },
      // Open, as under `npm start`: tests of who may see what (test/auth/) set their own.
      auth: { mode: "none" },
      ...extra,
      kafka: {
        brokers: topics.brokers,
        topic: topics.topic,
        dlq_topic: topics.dlqTopic,
        group_id: topics.groupId,
        partitions: 3,
        replication_factor: 1,
        ...(extra.kafka as object | undefined)
      },
      dead_letters: { retention: "36500 days", ...(extra.dead_letters as object | undefined) }
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

/** A record read back from a topic, with the partition it came from. */
export type ReadRecord = KafkaMessage & { readonly partition: number }

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** kafkajs marks errors a later attempt may not meet (a leader not ready or moved) as retriable. */
const isRetriable = (error: unknown): boolean => {
  if (typeof error !== "object" || error === null) return false
  const e = error as { retriable?: unknown; errors?: unknown; cause?: unknown }
  if (e.retriable === true) return true
  if (Array.isArray(e.errors)) return e.errors.length > 0 && e.errors.every(isRetriable)
  return e.cause !== undefined && isRetriable(e.cause)
}

/**
 * `call` until it succeeds, again after an error kafkajs calls retriable (for at most `timeoutMs`).
 * A new topic's leader may answer NOT_LEADER_FOR_PARTITION for a moment after the metadata already
 * names it (KRaft publishes the metadata before the broker has taken the partition on), and
 * kafkajs' admin retries that for produce and fetch, not for its offset requests.
 */
export const retryRetriable = async <A>(what: string, call: () => Promise<A>, timeoutMs = 30_000) => {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    try {
      return await call()
    } catch (error) {
      if (!isRetriable(error) || Date.now() >= deadline) {
        throw new Error(`${what}: ${error instanceof Error ? error.message : String(error)}`, {
          cause: error
        })
      }
      await sleep(100)
    }
  }
}

/** What kafkajs' client builds its admin, producers and consumers on; not in its public types. */
interface OffsetCluster {
  connect(): Promise<void>
  disconnect(): Promise<void>
  addTargetTopic(topic: string): Promise<void>
  findTopicPartitionMetadata(topic: string): ReadonlyArray<{ readonly partitionId: number }>
  fetchTopicsOffset(
    topics: ReadonlyArray<{
      topic: string
      fromBeginning: boolean
      partitions: ReadonlyArray<{ partition: number }>
    }>
  ): Promise<
    ReadonlyArray<{ topic: string; partitions: ReadonlyArray<{ partition: number; offset: string }> }>
  >
}

const READ_UNCOMMITTED = 0

/**
 * Each partition's first offset and its high watermark: the offset the next record will get,
 * whether the records before it are committed, aborted or in a transaction still open.
 *
 * kafkajs' admin asks for end offsets as a read_committed reader sees them, i.e. the last stable
 * offset, which stops at the first transaction not yet decided. A transaction counts as decided
 * for its producer (and its offset commit shows) before the coordinator has written its markers,
 * so right after a batch's offsets are committed its dead letters may still lie beyond the last
 * stable offset. The high watermark has them. kafkajs has no public call for it: its client makes
 * one cluster connection per isolation level, and this asks it for a read_uncommitted one.
 */
export const topicEnds = (kafka: Kafka, topic: string) =>
  retryRetriable(`the end offsets of ${topic}`, async () => {
    const create = Object.getOwnPropertySymbols(kafka).find(
      (s) => s.description === "private:Kafka:createCluster"
    )
    if (create === undefined) throw new Error("this kafkajs version cannot make a read_uncommitted cluster")
    const cluster = (kafka as unknown as Record<symbol, (options: object) => OffsetCluster>)[create]!({
      allowAutoTopicCreation: false,
      isolationLevel: READ_UNCOMMITTED
    })
    await cluster.connect()
    try {
      await cluster.addTargetTopic(topic)
      const partitions = cluster.findTopicPartitionMetadata(topic).map((p) => ({ partition: p.partitionId }))
      const offsetsFrom = async (fromBeginning: boolean) => {
        const [answer] = await cluster.fetchTopicsOffset([{ topic, fromBeginning, partitions }])
        return new Map((answer?.partitions ?? []).map((p) => [p.partition, BigInt(p.offset)]))
      }
      const low = await offsetsFrom(true)
      const high = await offsetsFrom(false)
      return partitions.map(({ partition }) => ({
        partition,
        low: low.get(partition) ?? 0n,
        high: high.get(partition) ?? 0n
      }))
    } finally {
      await cluster.disconnect()
    }
  })

/**
 * Every committed record of `topic`, in order within each partition: its end offsets are taken
 * first (see `topicEnds`), then a read_committed consumer in a group of its own reads until its
 * position on every partition has reached them. Commit and abort markers take an offset each and
 * are never handed over as messages, so the position is kafkajs' own: the last offset of each
 * batch it has processed, markers included (a batch of markers only is processed too, with no
 * messages). A transaction still open at the end holds the reader up until it is decided; if the
 * end is not reached within `timeoutMs` the read fails, saying where each partition stopped.
 */
export const readToEnd = async (
  kafka: Kafka,
  topic: string,
  timeoutMs = 30_000
): Promise<Array<ReadRecord>> => {
  const deadline = Date.now() + timeoutMs
  const ends = await topicEnds(kafka, topic)
  const position = new Map(ends.map((p) => [p.partition, p.low]))
  const behind = () => ends.filter((p) => position.get(p.partition)! < p.high)
  const records: Array<ReadRecord> = []
  if (behind().length === 0) return records

  const consumer = kafka.consumer({
    groupId: `reader-${randomBytes(5).toString("hex")}`,
    // too_large messages are 64 KiB each: whole batches of them, not one a fetch.
    maxBytesPerPartition: 8 * 1024 * 1024,
    maxWaitTimeInMs: 250
  })
  let crashed: unknown
  consumer.on(consumer.events.CRASH, (event) => {
    if (!event.payload.restart) crashed = event.payload.error
  })
  consumer.on(consumer.events.END_BATCH_PROCESS, ({ payload }) => {
    if (payload.topic !== topic) return
    const next = BigInt(payload.lastOffset) + 1n
    if (next > (position.get(payload.partition) ?? 0n)) position.set(payload.partition, next)
  })
  await consumer.connect()
  try {
    await consumer.subscribe({ topics: [topic], fromBeginning: true })
    await consumer.run({
      autoCommit: false,
      eachBatch: async ({ batch }) => {
        for (const message of batch.messages) records.push({ ...message, partition: batch.partition })
      }
    })
    while (behind().length > 0 && crashed === undefined && Date.now() < deadline) await sleep(50)
  } finally {
    await consumer.disconnect()
  }
  if (crashed !== undefined) {
    throw new Error(
      `reading ${topic} failed: ${crashed instanceof Error ? crashed.message : String(crashed)}`
    )
  }
  const short = behind()
  if (short.length > 0) {
    const where = short
      .map((p) => `partition ${p.partition} at ${position.get(p.partition)} of ${p.high}`)
      .join(", ")
    throw new Error(
      `${topic} was not read to its end within ${timeoutMs} ms (${where}): a transaction still open?`
    )
  }
  return records
}

/** Every committed record of `topic` (see `readToEnd`); fails the test if its end is not reached. */
export const readTopic = (brokers: string, topic: string, timeoutMs = 30_000) =>
  Effect.promise(() => readToEnd(kafkaFor(brokers), topic, timeoutMs))

/** The group's committed offsets and the topic's end offsets, by partition. */
export const offsets = (brokers: string, topic: string, groupId: string) =>
  Effect.promise(() =>
    retryRetriable(`the offsets of ${topic}`, async () => {
      // A new admin each attempt, with fresh metadata: a retried error may mean a leader moved.
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
  )

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
