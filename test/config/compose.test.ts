/**
 * No Docker engine runs where the tests run, so the compose file is kept honest by reading it:
 * its services, ports, variables and topics must agree with the code and the config files.
 */
import { readFileSync } from "node:fs"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Either, Layer, Option, Redacted } from "effect"
import { parse } from "yaml"
import {
  configKeys,
  envNameOf,
  makeConfigProvider,
  readConfigFile,
  validate
} from "../../src/config/AppConfig.ts"

const compose = parse(readFileSync("docker-compose.yml", "utf8"), { merge: true }) as {
  services: Record<
    string,
    {
      image?: string
      environment?: Record<string, unknown>
      ports?: Array<string>
      command?: unknown
      depends_on?: unknown
      volumes?: Array<string>
    }
  >
  volumes?: Record<string, unknown>
}
const services = compose.services
const serviceEnv = Object.fromEntries(
  Object.entries(services["order-service"]!.environment ?? {}).map(([k, v]) => [k, String(v)])
)

describe("docker-compose.yml agrees with the code", () => {
  it("has PostgreSQL on 5433, three Kafka brokers, the topic step, Kafka UI on 8080 and the service on 8081", () => {
    expect(Object.keys(services).sort()).toEqual(
      ["kafka-topics", "kafka-ui", "kafka1", "kafka2", "kafka3", "order-service", "postgres"].sort()
    )
    expect(services["postgres"]!.ports).toContain("5433:5432")
    expect(services["kafka-ui"]!.ports).toContain("8080:8080")
    expect(services["order-service"]!.ports).toContain("8081:8081")
    for (const broker of ["kafka1", "kafka2", "kafka3"]) {
      const env = services[broker]!.environment!
      expect(String(env["KAFKA_PROCESS_ROLES"]), broker).toBe("broker,controller")
      expect(Number(env["KAFKA_DEFAULT_REPLICATION_FACTOR"]), broker).toBe(3)
      expect(Number(env["KAFKA_MIN_INSYNC_REPLICAS"]), broker).toBe(2)
      expect(String(env["KAFKA_CONTROLLER_QUORUM_VOTERS"]).split(",")).toHaveLength(3)
    }
  })

  it("every Kafka broker keeps its log directories on a mounted named volume, so topics outlive the containers", () => {
    const brokers = Object.entries(services).filter(([, s]) =>
      String(s.environment?.["KAFKA_PROCESS_ROLES"] ?? "").includes("broker")
    )
    expect(brokers.map(([name]) => name).sort()).toEqual(["kafka1", "kafka2", "kafka3"])
    for (const [name, broker] of brokers) {
      // The apache/kafka image's default when KAFKA_LOG_DIRS is unset (configureDefaults).
      const logDirs = String(broker.environment?.["KAFKA_LOG_DIRS"] ?? "/tmp/kraft-combined-logs").split(",")
      const mounts = new Map(
        (broker.volumes ?? []).map((v) => {
          const [source, target] = v.split(":")
          return [target!, source!] as const
        })
      )
      for (const dir of logDirs) {
        const source = mounts.get(dir.trim())
        expect(source, `${name}: log directory ${dir} is not a mounted volume`).toBeDefined()
        expect(Object.keys(compose.volumes ?? {}), `${name}: ${source} is not a named volume`).toContain(
          source
        )
      }
    }
  })

  it.effect("every variable the service is given is a config key the code reads", () =>
    Effect.gen(function* () {
      const known = new Set([...(yield* configKeys).map((k) => envNameOf(k.split("."))), "CONFIG_FILE"])
      expect(Object.keys(serviceEnv).filter((name) => !known.has(name))).toEqual([])
    })
  )

  it.effect(
    "with its config file and variables the service's configuration is valid and points at the compose services",
    () =>
      Effect.gen(function* () {
        const file = readConfigFile(serviceEnv["CONFIG_FILE"]!)
        const config = yield* validate.pipe(
          Effect.provide(Layer.setConfigProvider(makeConfigProvider(file, serviceEnv))),
          Effect.either
        )
        if (Either.isLeft(config)) throw config.left
        const c = config.right
        expect(c.http.port).toBe(8081)
        const brokers = Option.getOrThrow(c.kafka.brokers)
        for (const broker of brokers) {
          const [host, port] = broker.split(":")
          expect(services[host!], broker).toBeDefined()
          expect(port).toBe("9092")
        }
        expect(c.kafka.replicationFactor).toBe(3)
        const url = new URL(Redacted.value(Option.getOrThrow(c.database.url)))
        const pg = services["postgres"]!.environment!
        expect(url.hostname).toBe("postgres")
        expect(url.port).toBe("5432")
        expect(url.username).toBe(pg["POSTGRES_USER"])
        expect(url.password).toBe(pg["POSTGRES_PASSWORD"])
        expect(url.pathname).toBe(`/${pg["POSTGRES_DB"]}`)
        const topicStep = JSON.stringify(services["kafka-topics"]!.command)
        expect(topicStep).toContain(`for topic in ${c.kafka.topic} ${c.kafka.dlqTopic}`)
        expect(topicStep).toContain("--replication-factor 3")
        expect(topicStep).toContain("min.insync.replicas=2")
      })
  )

  it("the image exposes the service's port, checks /healthz and runs as a non-root user", () => {
    const dockerfile = readFileSync("Dockerfile", "utf8")
    expect(dockerfile).toMatch(/^EXPOSE 8081$/m)
    expect(dockerfile).toMatch(/HEALTHCHECK[\s\S]*\/healthz/)
    expect(dockerfile).toMatch(/^USER node$/m)
    expect(dockerfile).toMatch(/CONFIG_FILE=config\/config\.docker\.yaml/)
  })

  it("the image builds and runs on Node 24, a release package.json's engines names", () => {
    const dockerfile = readFileSync("Dockerfile", "utf8")
    expect([...dockerfile.matchAll(/^FROM (\S+)/gm)].map((m) => m[1])).toEqual([
      "node:24-bookworm-slim",
      "deps",
      "node:24-bookworm-slim"
    ])
    const pkg = JSON.parse(readFileSync("package.json", "utf8")) as { engines: { node: string } }
    expect(pkg.engines.node.split(" || ")).toContain("^24.0.0")
  })
})
