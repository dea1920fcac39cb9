import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Either, Layer, Option, Redacted } from "effect"
import { configFilePath, makeConfigProvider, readConfigFile, validate } from "../../src/config/AppConfig.ts"

const load = (file: unknown, env: Record<string, string> = {}) =>
  validate.pipe(Effect.provide(Layer.setConfigProvider(makeConfigProvider(file, env))), Effect.either)

const defaults = readConfigFile("config/config.yaml")
/** The defaults listen on every address: without sign-in they start only when told to run open. */
const OPEN = { AUTH_MODE: "none" }

describe("configuration", () => {
  it.effect("the shipped config files are valid", () =>
    Effect.gen(function* () {
      // The compose file gives the Docker configuration its provider and secret in the environment.
      const compose = { AUTH_OIDC_ISSUER: "http://keycloak:8180/realms/orders", AUTH_OIDC_CLIENT_SECRET: "s" }
      for (const [file, env] of [
        // config.yaml listens on every address, so it wants a way to sign in, as a deployment gives it.
        ["config/config.yaml", compose],
        ["config/config.local.yaml", {}],
        ["config/config.docker.yaml", compose]
      ] as const) {
        const result = yield* load(readConfigFile(file), env)
        if (Either.isLeft(result)) throw new Error(`${file}: ${result.left.message}`)
      }
    })
  )

  it.effect(
    "on a network address, start-up refuses to serve without sign-in unless auth.mode: none says so, naming the key",
    () =>
      Effect.gen(function* () {
        const docker = readConfigFile("config/config.docker.yaml")
        const refused = yield* load(docker)
        expect(Either.isLeft(refused)).toBe(true)
        if (Either.isLeft(refused)) expect(refused.left.message).toContain("auth.mode (env AUTH_MODE)")
        for (const env of [
          { AUTH_MODE: "none" },
          { AUTH_API_KEYS: `ci:operator:${"a".repeat(64)}` },
          { HTTP_HOST: "127.0.0.1" }
        ])
          expect(Either.isRight(yield* load(docker, env)), JSON.stringify(env)).toBe(true)
        // A provider without its client secret cannot sign anyone in.
        const noSecret = yield* load(docker, { AUTH_OIDC_ISSUER: "https://id.example.com/realms/orders" })
        expect(Either.isLeft(noSecret) && noSecret.left.message).toContain(
          "auth.oidc.client_secret (env AUTH_OIDC_CLIENT_SECRET)"
        )
      })
  )

  it.effect("API keys and role maps are checked: a bad entry names auth.api_keys or auth.oidc.role_map", () =>
    Effect.gen(function* () {
      for (const [env, key] of [
        [{ AUTH_API_KEYS: "ci:operator:not-a-hash" }, "auth.api_keys (env AUTH_API_KEYS)"],
        [{ AUTH_API_KEYS: `ci:admin:${"a".repeat(64)}` }, "auth.api_keys (env AUTH_API_KEYS)"],
        [{ AUTH_OIDC_ROLE_MAP: "support:superuser" }, "auth.oidc.role_map (env AUTH_OIDC_ROLE_MAP)"],
        [{ AUTH_OIDC_ALGORITHMS: "HS256" }, "auth.oidc.algorithms (env AUTH_OIDC_ALGORITHMS)"],
        [{ AUTH_MODE: "off" }, "auth.mode (env AUTH_MODE)"]
      ] as const) {
        const result = yield* load(defaults, env)
        expect(Either.isLeft(result), JSON.stringify(env)).toBe(true)
        if (Either.isLeft(result)) expect(result.left.message).toContain(key)
      }
      const good = Either.getOrThrow(
        yield* load(defaults, {
          AUTH_API_KEYS: `ci:operator:${"a".repeat(64)}, prom:metrics:${"b".repeat(64)}`,
          AUTH_OIDC_ROLE_MAP: "support-agent:agent,support-lead:operator"
        })
      )
      expect(good.auth.apiKeys.map((k) => [k.name, k.role])).toEqual([
        ["ci", "operator"],
        ["prom", "metrics"]
      ])
      expect([...good.auth.oidc.roleMap]).toEqual([
        ["support-agent", "agent"],
        ["support-lead", "operator"]
      ])
    })
  )

  it.effect("the defaults: port 8081, embedded database and local Kafka, topics orders and orders.dlq", () =>
    Effect.gen(function* () {
      const config = Either.getOrThrow(yield* load(defaults, OPEN))
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
          ...OPEN,
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
