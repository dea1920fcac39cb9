/**
 * The consumer group's lag in `/metrics`: on the run's real broker, messages waiting for a group
 * that is not consuming show as lag and as the age of the oldest of them, and both fall to 0 once
 * the service consumes; on a fake admin under the TestClock, a broker that keeps failing costs one
 * warning a minute and never stops the measurement.
 */
import { describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Duration, Effect, Either, Layer, Logger, LogLevel, TestClock } from "effect"
import { Kafka, logLevel, type Admin } from "kafkajs"
import * as App from "../../src/App.ts"
import { makeConfigProvider, readConfigFile, validate } from "../../src/config/AppConfig.ts"
import { KafkaClient } from "../../src/kafka/KafkaClient.ts"
import * as ConsumerLag from "../../src/observability/ConsumerLag.ts"
import { scrape } from "../../src/observability/Prometheus.ts"
import { sampleOrders } from "../support/arbitraries.ts"
import { TestDatabase } from "../support/database.ts"
import {
  createTopics,
  eventually,
  freshTopics,
  produce,
  testConfig,
  type TestTopics
} from "../support/kafka.ts"
import { parseMetrics } from "../support/metrics.ts"

/** The service's configuration for `topics`, its lag measured every `interval`. */
const configWithLag = (topics: TestTopics, interval: string) =>
  testConfig(topics, {
    kafka: { lag_interval: interval }
  })

/** The samples `/metrics` shows of `name` for the consumer group `group`, by partition. */
const lagSeries = (name: string, group: string) =>
  Effect.map(scrape, (text) => {
    const byPartition = new Map<number, number>()
    for (const s of parseMetrics(text))
      if (s.name === name && s.labels["consumergroup"] === group)
        byPartition.set(Number(s.labels["partition"]), s.value)
    return byPartition
  })

const lagOf = (group: string) => lagSeries("kafka_consumergroup_lag", group)
const ageOf = (group: string) => lagSeries("kafka_consumergroup_lag_seconds", group)

const same = (actual: ReadonlyMap<number, number>, expected: Record<number, number>) =>
  JSON.stringify([...actual].sort(([a], [b]) => a - b)) ===
  JSON.stringify(Object.entries(expected).map(([p, v]) => [Number(p), v]))

const asMessage = (order: { readonly order_uid: string }) => ({
  key: order.order_uid,
  value: JSON.stringify(order)
})

describe("consumer lag on a real broker", () => {
  it.live(
    "messages the group has not consumed show as lag per partition and as the age of the oldest; both fall to 0 once the service consumes them",
    () => {
      const topics = freshTopics()
      const orders = sampleOrders(26, 29, "lag")
      const config = configWithLag(topics, "300 millis")
      const group = topics.groupId
      return Effect.gen(function* () {
        yield* createTopics(topics)
        // 20 on partition 0, 5 on partition 1, none on partition 2; nothing consumes them yet.
        yield* produce(topics.brokers, topics.topic, orders.slice(0, 20).map(asMessage), 0)
        yield* produce(topics.brokers, topics.topic, orders.slice(20, 25).map(asMessage), 1)

        yield* Effect.scoped(
          Effect.gen(function* () {
            yield* Layer.build(
              ConsumerLag.layer.pipe(Layer.provide(KafkaClient.Default), Layer.provide(config))
            )
            yield* eventually(
              "/metrics shows a lag of 20, 5 and 0 messages",
              Effect.map(lagOf(group), (lag) => same(lag, { 0: 20, 1: 5, 2: 0 }))
            )
            const ages = yield* ageOf(group)
            expect(ages.get(2)).toBe(0)
            expect(ages.get(0)).toBeGreaterThan(0)
            expect(ages.get(1)).toBeGreaterThan(0)
            // The age is the oldest waiting message's: it grows while nothing is consumed…
            yield* eventually(
              "the oldest waiting message on partition 0 is a second old",
              Effect.map(ageOf(group), (a) => (a.get(0) ?? 0) >= 1)
            )
            // …and a newer message behind it does not make it younger.
            yield* produce(topics.brokers, topics.topic, orders.slice(25).map(asMessage), 0)
            yield* eventually(
              "/metrics counts the 21st message on partition 0",
              Effect.map(lagOf(group), (lag) => lag.get(0) === 21)
            )
            expect((yield* ageOf(group)).get(0)).toBeGreaterThanOrEqual(1)
          })
        )
        // Closed, the measurement takes its series with it: no stale figure stays behind.
        expect((yield* lagOf(group)).size).toBe(0)
        expect((yield* ageOf(group)).size).toBe(0)

        // The service as App composes ingestion (its lag with it) consumes them.
        yield* Effect.scoped(
          Effect.gen(function* () {
            yield* Layer.build(
              App.layerIngest(KafkaClient.Default).pipe(
                Layer.provideMerge(App.layerCore),
                Layer.provideMerge(TestDatabase),
                Layer.provide(config)
              )
            )
            yield* eventually(
              "/metrics shows no lag on any partition",
              Effect.map(lagOf(group), (lag) => same(lag, { 0: 0, 1: 0, 2: 0 })),
              60_000
            )
            yield* eventually(
              "/metrics shows no waiting message's age on any partition",
              Effect.map(ageOf(group), (age) => same(age, { 0: 0, 1: 0, 2: 0 }))
            )
          })
        )
      })
    },
    120_000
  )
})

describe("consumer lag when the broker fails", () => {
  interface Logged {
    readonly level: LogLevel.LogLevel
    readonly message: string
  }

  it.effect(
    "a measurement that keeps failing warns once a minute, shows no stale lag, and the next one that works shows it again",
    () =>
      Effect.gen(function* () {
        const logged: Array<Logged> = []
        const logger = Logger.make<unknown, void>(({ logLevel: level, message }) => {
          logged.push({ level, message: Array.isArray(message) ? message.join(" ") : String(message) })
        })
        let attempts = 0
        let failing = false
        const topic = "lag-orders"
        const group = "lag-fake-group"
        // A broker that answers at once: synchronously failing, or with a partition that has no lag.
        const admin = {
          fetchTopicOffsets: () => {
            attempts++
            if (failing) throw new Error("This server is not the leader for that topic-partition")
            return Promise.resolve([{ partition: 0, offset: "7", high: "7", low: "0" }])
          },
          fetchOffsets: () =>
            Promise.resolve([{ topic, partitions: [{ partition: 0, offset: "7", metadata: null }] }])
        } as unknown as Admin
        const client = KafkaClient.make({
          kafka: new Kafka({ clientId: "lag-test", brokers: ["127.0.0.1:1"], logLevel: logLevel.NOTHING }),
          admin,
          brokers: ["127.0.0.1:1"],
          topics: { orders: topic, deadLetters: `${topic}.dlq` },
          groupId: group,
          clientId: "lag-test"
        })
        /** Let the measuring fiber run until `done` holds (it does without any clock passing). */
        const until = (what: string, done: () => boolean | Effect.Effect<boolean>) =>
          Effect.gen(function* () {
            const check = () => {
              const d = done()
              return typeof d === "boolean" ? Effect.succeed(d) : d
            }
            for (let i = 0; i < 1_000; i++) {
              if (yield* check()) return
              yield* Effect.promise(() => new Promise<void>((resolve) => setImmediate(resolve)))
            }
            return yield* Effect.die(new Error(`never happened: ${what}`))
          })
        const warnings = () => logged.filter((l) => l.level === LogLevel.Warning)

        yield* Effect.scoped(
          Effect.gen(function* () {
            yield* Layer.build(
              ConsumerLag.layer.pipe(
                Layer.provide(Layer.succeed(KafkaClient, client)),
                Layer.provide(
                  Layer.setConfigProvider(ConfigProvider.fromJson({ kafka: { lag_interval: "10 seconds" } }))
                )
              )
            )
            yield* until("the first measurement shows its lag", () =>
              Effect.map(lagOf(group), (lag) => same(lag, { 0: 0 }))
            )
            expect(attempts).toBe(1)

            failing = true
            // Two minutes of failures, one every 10 seconds.
            for (let minute10s = 1; minute10s <= 12; minute10s++) {
              yield* TestClock.adjust("10 seconds")
              yield* until(`measurement ${minute10s + 1}`, () => attempts === minute10s + 1)
              expect((yield* lagOf(group)).size, "no stale lag while it cannot be measured").toBe(0)
            }
            // At 10 s and at 70 s: once a minute, however many attempts fail; the others at debug.
            expect(warnings().map((w) => w.message)).toEqual([
              "Could not measure the consumer lag; /metrics shows none until it can",
              "Could not measure the consumer lag; /metrics shows none until it can"
            ])

            failing = false
            yield* TestClock.adjust("10 seconds")
            yield* until("the recovery is logged", () =>
              logged.some((l) => l.message === "Measuring the consumer lag again")
            )
            expect(attempts).toBe(14)
            expect(yield* lagOf(group)).toEqual(new Map([[0, 0]]))
            expect(yield* ageOf(group)).toEqual(new Map([[0, 0]]))
            expect(logged.filter((l) => l.level === LogLevel.Debug)).toHaveLength(10)
          })
        ).pipe(
          Effect.provide(Logger.replace(Logger.defaultLogger, logger)),
          Effect.provide(Logger.minimumLogLevel(LogLevel.Debug))
        )
      })
  )
})

describe("kafka.lag_interval", () => {
  it.effect(
    "is 10 seconds unless set, and a duration that is not positive stops start-up, naming the key",
    () =>
      Effect.gen(function* () {
        const defaults = readConfigFile("config/config.yaml")
        const load = (env: Record<string, string>) =>
          validate.pipe(
            Effect.provide(
              Layer.setConfigProvider(makeConfigProvider(defaults, { AUTH_MODE: "none", ...env }))
            ),
            Effect.either
          )
        const loaded = yield* load({})
        expect(
          Either.isRight(loaded) ? Duration.toMillis(loaded.right.kafka.lagInterval) : loaded.left.message
        ).toBe(10_000)
        const set = yield* load({ KAFKA_LAG_INTERVAL: "2 seconds" })
        expect(Either.isRight(set) ? Duration.toMillis(set.right.kafka.lagInterval) : set.left.message).toBe(
          2_000
        )
        for (const bad of ["0 seconds", "soon"]) {
          const refused = yield* load({ KAFKA_LAG_INTERVAL: bad })
          expect(Either.isLeft(refused), bad).toBe(true)
          if (Either.isLeft(refused))
            expect(refused.left.message).toContain("kafka.lag_interval (env KAFKA_LAG_INTERVAL)")
        }
      })
  )
})
