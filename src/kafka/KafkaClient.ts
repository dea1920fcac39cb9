/**
 * The kafkajs client, and the topics the service needs. It connects to the brokers it is given
 * and starts nothing: where no `kafka.brokers` are configured, the composition (src/App.ts) gives
 * it those of a local broker.
 */
import { Effect, Layer, Runtime, Schedule } from "effect"
import { Kafka, logLevel, type Admin } from "kafkajs"
import { KafkaBrokers, KafkaConfig } from "../config/AppConfig.ts"
import { kafkaError } from "./KafkaError.ts"
import "./kafkajsRequestQueue.ts"

/** kafkajs' text for Kafka's CONCURRENT_TRANSACTIONS error. */
const CONCURRENT_TRANSACTIONS = "another concurrent operation on the same transaction was ongoing"

/** Route kafkajs' own logs through our logger (the runtime's), so they come out as our structured lines. */
const kafkajsLogCreator = (runtime: Runtime.Runtime<never>) => () => {
  const runFork = Runtime.runFork(runtime)
  return ({ level, log }: { level: number; log: { message: string } & Record<string, unknown> }) => {
    const { message, timestamp: _t, logger: _l, ...extra } = log
    // We retry a failed transaction ourselves, from the start; kafkajs' advice does not apply.
    if (message.startsWith("Limiting retries for the idempotent producer")) return
    // kafkajs reports errors it retries itself (a coordinator still loading, a leader moving) at
    // ERROR; what we cannot recover from reaches our own code, which logs it as an error.
    // CONCURRENT_TRANSACTIONS right after a commit is routine (the coordinator is still writing its
    // markers) and retried at once; the Java client too logs it at debug.
    const routine =
      message.includes(CONCURRENT_TRANSACTIONS) ||
      (typeof extra["error"] === "string" && extra["error"].includes(CONCURRENT_TRANSACTIONS))
    const write = level <= logLevel.WARN && !routine ? Effect.logWarning : Effect.logDebug
    runFork(write(message).pipe(Effect.annotateLogs({ component: "kafkajs", ...extra })))
  }
}

export interface Topics {
  readonly orders: string
  readonly deadLetters: string
}

/**
 * A dead letter is a whole message of the orders topic plus the headers saying why (a few KB at
 * most): the dead-letter topic takes records up to twice Kafka's default limit, so that any message
 * the orders topic accepted can be parked whole.
 */
export const DEAD_LETTER_MAX_MESSAGE_BYTES = 2 * 1024 * 1024

/** Create the topics that are missing, with `extraConfig` by topic; existing topics are left as they are. */
export const ensureTopics = (
  admin: Admin,
  topics: ReadonlyArray<string>,
  partitions: number,
  replicationFactor: number,
  extraConfig: Readonly<Record<string, Readonly<Record<string, string>>>> = {}
) =>
  Effect.tryPromise({
    try: async () => {
      const existing = new Set(await admin.listTopics())
      const missing = topics.filter((t) => !existing.has(t))
      if (missing.length > 0) {
        await admin.createTopics({
          waitForLeaders: true,
          topics: missing.map((topic) => ({
            topic,
            numPartitions: partitions,
            replicationFactor,
            configEntries: [
              ...(replicationFactor > 1
                ? [{ name: "min.insync.replicas", value: String(Math.min(2, replicationFactor)) }]
                : []),
              ...Object.entries(extraConfig[topic] ?? {}).map(([name, value]) => ({ name, value }))
            ]
          }))
        })
      }
      return missing
    },
    catch: kafkaError("Could not create the topics")
  }).pipe(
    // A broker busy electing the new partitions' leaders answers "does not host this
    // topic-partition" to kafkajs' wait for them, retriable; the topics are created meanwhile
    // (a second try finds them). Anything else fails at once.
    Effect.retry({
      schedule: Schedule.exponential("250 millis"),
      times: 5,
      while: (e) => (e.cause as { retriable?: unknown } | undefined)?.retriable === true
    })
  )

/** What the client needs: where the brokers are, and the service's names and topic settings. */
export interface KafkaClientOptions {
  readonly brokers: ReadonlyArray<string>
  readonly clientId: string
  readonly groupId: string
  readonly topic: string
  readonly dlqTopic: string
  /** Partitions and replication factor of the topics the client creates. */
  readonly partitions: number
  readonly replicationFactor: number
}

const make = (options: KafkaClientOptions) =>
  Effect.gen(function* () {
    const brokers = options.brokers
    const kafka = new Kafka({
      clientId: options.clientId,
      brokers: [...brokers],
      logCreator: kafkajsLogCreator(yield* Effect.runtime<never>()),
      logLevel: logLevel.WARN,
      // Our own retries (with backoff, holding the partition) handle outages; keep kafkajs' short.
      retry: { initialRetryTime: 200, retries: 5 }
    })
    const topics: Topics = { orders: options.topic, deadLetters: options.dlqTopic }

    const admin = kafka.admin()
    // Kafka may come up after us (compose starts everything at once): keep trying for a while.
    yield* Effect.acquireRelease(
      Effect.tryPromise({
        try: () => admin.connect(),
        catch: kafkaError(`Could not connect to Kafka at ${brokers.join(",")}`)
      }).pipe(
        Effect.tapError((e) => Effect.logWarning(`${e.message}; retrying`)),
        Effect.retry(
          Schedule.exponential("500 millis").pipe(
            Schedule.union(Schedule.spaced("5 seconds")),
            Schedule.upTo("2 minutes")
          )
        )
      ),
      () => Effect.promise(() => admin.disconnect())
    )
    const created = yield* ensureTopics(
      admin,
      [topics.orders, topics.deadLetters],
      options.partitions,
      options.replicationFactor,
      { [topics.deadLetters]: { "max.message.bytes": String(DEAD_LETTER_MAX_MESSAGE_BYTES) } }
    )
    if (created.length > 0)
      yield* Effect.logInfo("Created topics").pipe(Effect.annotateLogs({ topics: created }))

    return {
      kafka,
      admin,
      brokers,
      topics,
      groupId: options.groupId,
      clientId: options.clientId
    } as const
  })

/** The client as configured (`kafka.*`); `kafka.brokers` must be set. */
export class KafkaClient extends Effect.Service<KafkaClient>()("KafkaClient", {
  scoped: Effect.flatMap(Effect.all([KafkaConfig, KafkaBrokers]), ([config, brokers]) =>
    make({ ...config, brokers })
  )
}) {
  /** A client of `brokers` (a local server's), with the rest of its settings from `kafka.*`. */
  static readonly layer = (brokers: ReadonlyArray<string>) =>
    Layer.scoped(
      KafkaClient,
      Effect.flatMap(KafkaConfig, (config) => make({ ...config, brokers })).pipe(Effect.map(KafkaClient.make))
    )
}
