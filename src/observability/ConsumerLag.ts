/**
 * The consumer group's lag on the orders topic, in `/metrics`, measured every `kafka.lag_interval`
 * (10 seconds by default), whether or not this process consumes at the moment:
 *
 * - `kafka_consumergroup_lag{consumergroup,topic,partition}`: messages not consumed yet, per
 *   partition — its end offset less the group's committed offset (where the group has none, or one
 *   the topic has deleted since, the partition's start offset: where the group's consumers begin).
 *   Name and labels are kafka_exporter's, which Kafka dashboards and alerts already use.
 * - `kafka_consumergroup_lag_seconds{consumergroup,topic,partition}`: the age of the oldest message
 *   not consumed yet, per partition — now less the timestamp of the message at the group's offset
 *   (the producer's send time, or the broker's append time on a topic set to LogAppendTime; a
 *   producer clock ahead of ours reads as 0); 0 where the partition has no lag. Measured at the
 *   message, not estimated from offset rates as kafka-lag-exporter's series of that name is.
 *   Absent for a lagging partition whose message could not be read this time.
 *
 * Every instance reports the group's lag on every partition, whichever instance consumes it: the
 * series are alike across instances (dashboards take `max by (topic, partition)`), and a partition
 * no instance consumes still shows. The cost is per interval, never per message: two admin calls
 * (end offsets, the group's offsets), then, for each partition that lags, one fetch of
 * its first record batch. A failed measurement removes the series rather than leave a stale
 * figure, logs a warning at most once a minute and is tried again at the next interval; ingestion
 * and `/readyz` never wait on it.
 */
import { Clock, Duration, Effect, Layer, Option, Ref, Schedule } from "effect"
import type { Admin, Kafka } from "kafkajs"
import { KafkaConfig } from "../config/AppConfig.ts"
import { KafkaClient } from "../kafka/KafkaClient.ts"
import { describeKafkaError, errorChain, kafkaError, KafkaError } from "../kafka/KafkaError.ts"
import { gauge } from "./Prometheus.ts"

const labelNames = ["consumergroup", "topic", "partition"] as const

const lagMessages = gauge({
  name: "kafka_consumergroup_lag",
  help: "Messages of the partition the consumer group has not consumed yet: end offset less committed offset",
  labelNames
})

const lagSeconds = gauge({
  name: "kafka_consumergroup_lag_seconds",
  help: "Age of the oldest message of the partition the consumer group has not consumed yet (0 without lag)",
  labelNames
})

/** One partition's lag, as one measurement found it. */
interface PartitionLag {
  readonly partition: number
  /** Messages between the group's offset and the partition's end. */
  readonly messages: number
  /** Age of the message at the group's offset; none when it could not be read. */
  readonly ageSeconds: Option.Option<number>
}

/** Where the group's consumers read a partition next: its committed offset, else the partition's start. */
const positionOf = (committed: bigint, low: bigint): bigint => (committed < low ? low : committed)

/** Whether kafkajs calls `error` one a later try may not meet (a coordinator still loading or moved). */
const isRetriable = (error: KafkaError): boolean =>
  errorChain(error.cause).some((link) => (link as { readonly retriable?: unknown }).retriable === true)

/** How many warnings a failing measurement writes at most: one a minute (the rest at debug). */
const WARN_EVERY_MILLIS = 60_000

// kafkajs has no public call that reads a record at an offset without joining a group (a join takes
// seconds and leaves a group behind). Its client builds its admin, producers and consumers on a
// cluster object whose brokers answer Fetch requests; one is asked for here the way the client asks
// (kafkajs 2.2.4, its last release). Where it is missing the ages are not reported, and that is logged.
const CREATE_CLUSTER = "private:Kafka:createCluster"
const READ_COMMITTED = 1

interface FetchedRecord {
  readonly offset: string
  readonly timestamp: string
  readonly isControlRecord?: boolean
}
interface FetchBroker {
  fetch(request: {
    readonly maxWaitTime: number
    readonly minBytes: number
    readonly maxBytes: number
    readonly isolationLevel: number
    readonly topics: ReadonlyArray<{
      readonly topic: string
      readonly partitions: ReadonlyArray<{ partition: number; fetchOffset: string; maxBytes: number }>
    }>
  }): Promise<{
    readonly responses: ReadonlyArray<{
      readonly partitions: ReadonlyArray<{ readonly messages: ReadonlyArray<FetchedRecord> }>
    }>
  }>
}
interface FetchCluster {
  connect(): Promise<void>
  disconnect(): Promise<void>
  refreshMetadata(): Promise<void>
  addTargetTopic(topic: string): Promise<void>
  findLeaderForPartitions(topic: string, partitions: ReadonlyArray<number>): Record<string, Array<number>>
  findBroker(options: { nodeId: string }): Promise<FetchBroker>
}

const fetchClusterOf = (kafka: Kafka): FetchCluster | undefined => {
  const create = Object.getOwnPropertySymbols(kafka).find((s) => s.description === CREATE_CLUSTER)
  if (create === undefined) return undefined
  const factory = (kafka as unknown as Record<symbol, unknown>)[create]
  return typeof factory === "function"
    ? (factory as (options: object) => FetchCluster)({
        allowAutoTopicCreation: false,
        isolationLevel: READ_COMMITTED
      })
    : undefined
}

/**
 * The timestamp (ms) of the first record at or after each given offset, by partition: one Fetch
 * per partition to its leader, for at most one record batch (a broker sends the first batch whole
 * even past `maxBytes`, and nothing more), without waiting for records that are not there yet.
 * Connects on first use and stays connected for the life of the scope.
 */
const makeOldestReader = (kafka: Kafka, topic: string) =>
  Effect.gen(function* () {
    const cluster = fetchClusterOf(kafka)
    if (cluster === undefined) {
      yield* Effect.logWarning(
        "This kafkajs cannot read a record at an offset: kafka_consumergroup_lag_seconds is not reported"
      )
      return (_: ReadonlyArray<{ readonly partition: number; readonly offset: bigint }>) =>
        Effect.succeed(new Map<number, number>())
    }
    let used = false
    // After a failure the leaders may have moved: metadata is read again before the next fetch.
    let stale = false
    yield* Effect.addFinalizer(() =>
      used
        ? Effect.promise(() => cluster.disconnect().catch(() => undefined)).pipe(
            Effect.interruptible,
            Effect.timeout("5 seconds"),
            Effect.ignore
          )
        : Effect.void
    )
    return (positions: ReadonlyArray<{ readonly partition: number; readonly offset: bigint }>) =>
      positions.length === 0
        ? Effect.succeed(new Map<number, number>())
        : Effect.tryPromise({
            try: async () => {
              used = true
              await cluster.connect()
              await cluster.addTargetTopic(topic)
              if (stale) await cluster.refreshMetadata()
              stale = false
              const leaders = cluster.findLeaderForPartitions(
                topic,
                positions.map((p) => p.partition)
              )
              const leaderOf = new Map(
                Object.entries(leaders).flatMap(([node, partitions]) =>
                  partitions.map((p) => [p, node] as const)
                )
              )
              const found = await Promise.all(
                positions.map(async ({ partition, offset }) => {
                  const node = leaderOf.get(partition)
                  if (node === undefined) return undefined
                  const broker = await cluster.findBroker({ nodeId: node })
                  const { responses } = await broker.fetch({
                    maxWaitTime: 0,
                    minBytes: 1,
                    maxBytes: 1,
                    isolationLevel: READ_COMMITTED,
                    topics: [
                      { topic, partitions: [{ partition, fetchOffset: offset.toString(), maxBytes: 1 }] }
                    ]
                  })
                  // A batch may begin before the offset asked for; markers are not messages.
                  const record = responses
                    .flatMap((r) => r.partitions)
                    .flatMap((p) => p.messages)
                    .find((m) => m.isControlRecord !== true && BigInt(m.offset) >= offset)
                  return record === undefined ? undefined : ([partition, Number(record.timestamp)] as const)
                })
              )
              return new Map(found.filter((f) => f !== undefined))
            },
            catch: (error) => {
              stale = true
              return kafkaError(`Could not read the oldest unconsumed messages of ${topic}`)(error)
            }
          })
  })

/** The group's lag on each partition of `topic`; ages from `readOldest`, which may fail alone. */
const measure = (
  admin: Admin,
  groupId: string,
  topic: string,
  readOldest: (
    positions: ReadonlyArray<{ readonly partition: number; readonly offset: bigint }>
  ) => Effect.Effect<ReadonlyMap<number, number>, KafkaError>
) =>
  Effect.gen(function* () {
    const [ends, groupOffsets] = yield* Effect.all(
      [
        Effect.tryPromise({
          try: () => admin.fetchTopicOffsets(topic),
          catch: kafkaError(`Could not read the end offsets of ${topic}`)
        }),
        Effect.tryPromise({
          try: () => admin.fetchOffsets({ groupId, topics: [topic] }),
          catch: kafkaError(`Could not read the offsets of the consumer group ${groupId}`)
        })
      ],
      { concurrency: 2 }
    )
    const committed = new Map(
      (groupOffsets.find((t) => t.topic === topic)?.partitions ?? []).map((p) => [
        p.partition,
        BigInt(p.offset)
      ])
    )
    const partitions = ends.map(({ partition, low, high }) => {
      const position = positionOf(committed.get(partition) ?? -1n, BigInt(low))
      const end = BigInt(high)
      return { partition, offset: position, messages: end > position ? end - position : 0n }
    })
    const timestamps = yield* Effect.either(readOldest(partitions.filter((p) => p.messages > 0n)))
    const now = yield* Clock.currentTimeMillis
    const lags: Array<PartitionLag> = partitions.map(({ partition, messages }) => ({
      partition,
      messages: Number(messages),
      ageSeconds:
        messages === 0n
          ? Option.some(0)
          : timestamps._tag === "Right"
            ? Option.map(
                Option.fromNullable(timestamps.right.get(partition)),
                (at) => Math.max(0, now - at) / 1000
              )
            : Option.none()
    }))
    return { lags, agesFailed: timestamps._tag === "Left" ? Option.some(timestamps.left) : Option.none() }
  })

/**
 * Measures the group's lag on the orders topic every `kafka.lag_interval` for as long as the layer
 * lives, and shows it in `/metrics`; its series go when the layer closes.
 */
export const layer = Layer.scopedDiscard(
  Effect.gen(function* () {
    const client = yield* KafkaClient
    const { lagInterval } = yield* KafkaConfig
    const topic = client.topics.orders
    const groupId = client.groupId
    const readOldest = yield* makeOldestReader(client.kafka, topic)

    const reported = new Set<number>()
    const labelsOf = (partition: number) => ({ consumergroup: groupId, topic, partition })
    const forget = (partition: number) => {
      lagMessages.remove(labelsOf(partition))
      lagSeconds.remove(labelsOf(partition))
      reported.delete(partition)
    }
    const show = (lags: ReadonlyArray<PartitionLag>) =>
      Effect.sync(() => {
        const present = new Set(lags.map((l) => l.partition))
        for (const partition of reported) if (!present.has(partition)) forget(partition)
        for (const { partition, messages, ageSeconds } of lags) {
          lagMessages.set(labelsOf(partition), messages)
          if (Option.isSome(ageSeconds)) lagSeconds.set(labelsOf(partition), ageSeconds.value)
          else lagSeconds.remove(labelsOf(partition))
          reported.add(partition)
        }
      })
    const clear = Effect.sync(() => {
      for (const partition of reported) forget(partition)
    })
    // Added before the loop is forked, so it runs after the loop has stopped.
    yield* Effect.addFinalizer(() => clear)

    const lastWarning = yield* Ref.make(Option.none<number>())
    const failing = yield* Ref.make(false)
    const warn = (message: string, error: KafkaError) =>
      Effect.gen(function* () {
        yield* Ref.set(failing, true)
        const now = yield* Clock.currentTimeMillis
        const last = yield* Ref.get(lastWarning)
        const log =
          Option.isNone(last) || now - last.value >= WARN_EVERY_MILLIS
            ? Effect.zipRight(Ref.set(lastWarning, Option.some(now)), Effect.logWarning(message))
            : Effect.logDebug(message)
        yield* log.pipe(
          Effect.annotateLogs({ topic, group_id: groupId, error: describeKafkaError(error.cause ?? error) })
        )
      })

    // A broker that does not answer must not hold the next measurement back for long.
    const deadline = Duration.max(lagInterval, Duration.seconds(10))
    const once = measure(client.admin, groupId, topic, readOldest).pipe(
      // The group's coordinator is often still loading as the service starts, or moving: a few quick
      // tries before it counts as a failure.
      Effect.retry({ schedule: Schedule.exponential("200 millis"), times: 3, while: isRetriable }),
      Effect.timeoutFail({
        duration: deadline,
        onTimeout: () =>
          new KafkaError({ message: `Measuring the lag took longer than ${Duration.format(deadline)}` })
      }),
      Effect.matchEffect({
        onFailure: (error) =>
          Effect.zipRight(
            clear,
            warn("Could not measure the consumer lag; /metrics shows none until it can", error)
          ),
        onSuccess: ({ lags, agesFailed }) =>
          Effect.gen(function* () {
            yield* show(lags)
            if (Option.isSome(agesFailed))
              return yield* warn("Could not read the age of the oldest unconsumed messages", agesFailed.value)
            if (yield* Ref.getAndSet(failing, false))
              yield* Effect.logInfo("Measuring the consumer lag again").pipe(
                Effect.annotateLogs({ topic, group_id: groupId })
              )
          })
      })
    )
    yield* once.pipe(Effect.repeat(Schedule.spaced(lagInterval)), Effect.forkScoped)
  })
)
