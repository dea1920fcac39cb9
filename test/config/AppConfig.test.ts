import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Either, Layer, Option, Redacted } from "effect"
import { configFilePath, makeConfigProvider, readConfigFile, validate } from "../../src/config/AppConfig.ts"

const load = (file: unknown, env: Record<string, string> = {}) =>
  validate.pipe(Effect.provide(Layer.setConfigProvider(makeConfigProvider(file, env))), Effect.either)

const defaults = readConfigFile("config/config.yaml")

describe("configuration", () => {
  it.effect("the shipped config files are valid", () =>
    Effect.gen(function* () {
      for (const file of ["config/config.yaml", "config/config.local.yaml", "config/config.docker.yaml"]) {
        const result = yield* load(readConfigFile(file))
        if (Either.isLeft(result)) throw new Error(`${file}: ${result.left.message}`)
      }
    })
  )

  it.effect("the defaults: port 8081, embedded database and local Kafka, topics orders and orders.dlq", () =>
    Effect.gen(function* () {
      const config = Either.getOrThrow(yield* load(defaults))
      expect(config.http.port).toBe(8081)
      expect(Option.isNone(config.database.url)).toBe(true)
      expect(Option.isNone(config.kafka.brokers)).toBe(true)
      expect([config.kafka.topic, config.kafka.dlqTopic, config.kafka.groupId]).toEqual([
        "orders",
        "orders.dlq",
        "order-service"
      ])
      expect(Duration.toMillis(config.cache.ttl)).toBe(600_000)
    })
  )

  it.effect("environment variables win over the file", () =>
    Effect.gen(function* () {
      const config = Either.getOrThrow(
        yield* load(defaults, {
          HTTP_PORT: "9090",
          DATABASE_URL: "postgres://u:p@db:5432/orders",
          KAFKA_BROKERS: "k1:9092, k2:9092",
          CACHE_MAX_ENTRIES: "5"
        })
      )
      expect(config.http.port).toBe(9090)
      expect(Option.map(config.database.url, Redacted.value)).toEqual(
        Option.some("postgres://u:p@db:5432/orders")
      )
      expect(config.kafka.brokers).toEqual(Option.some(["k1:9092", "k2:9092"]))
      expect(config.cache.maxEntries).toBe(5)
    })
  )

  it.effect("a wrong value stops start-up with a message naming the key and the expected form", () =>
    Effect.gen(function* () {
      const negative = yield* load({ cache: { max_entries: -1 } })
      expect(Either.isLeft(negative) && negative.left.message).toMatch(
        /cache\.max_entries \(env CACHE_MAX_ENTRIES\): .*≥ 0/
      )
      const brokers = yield* load(defaults, { KAFKA_BROKERS: "not a broker list" })
      expect(Either.isLeft(brokers) && brokers.left.message).toMatch(
        /kafka\.brokers \(env KAFKA_BROKERS\): expected a comma-separated list of host:port/
      )
      const duration = yield* load({ http: { shutdown_timeout: "soon" } })
      expect(Either.isLeft(duration) && duration.left.message).toMatch(/http\.shutdown_timeout/)
      const level = yield* load(defaults, { LOG_LEVEL: "loud" })
      expect(Either.isLeft(level) && level.left.message).toMatch(
        /log\.level \(env LOG_LEVEL\): expected one of trace/
      )
      const port = yield* load({ http: { port: "eighty" } })
      expect(Either.isLeft(port) && port.left.message).toMatch(/http\.port/)
    })
  )

  it("CONFIG_FILE selects the file; a file that is not YAML is refused with its name", () => {
    expect(configFilePath({ CONFIG_FILE: "config/config.docker.yaml" })).toMatch(
      /config\/config\.docker\.yaml$/
    )
    expect(configFilePath({})).toMatch(/config\/config\.yaml$/)
    expect(() => readConfigFile("package-lock.json.missing")).toThrow(/Cannot read the config file/)
    expect(() => readConfigFile("README.md")).toThrow(/config file README.md/)
  })
})
