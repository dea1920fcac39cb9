import { describe, expect, it, layer } from "@effect/vitest"
import { Context, Duration, Effect, Either, Layer, Schedule } from "effect"
import { Kafka, logLevel, type Consumer, type KafkaMessage } from "kafkajs"
import { spawn } from "node:child_process"
import { randomUUID } from "node:crypto"
import { existsSync } from "node:fs"
import { mkdtemp, rm, writeFile } from "node:fs/promises"
import { createServer } from "node:net"
import { tmpdir } from "node:os"
import path from "node:path"
import { fileURLToPath } from "node:url"
import { LocalKafka } from "../../src/local/LocalKafka.ts"
import { decodeOrderBytes } from "../../src/orders/OrderDecoder.ts"
import { DEFAULT_MAX_MESSAGE_BYTES, generateOrders } from "../../src/tools/OrderGenerator.ts"
import { BOOTSTRAP_FILE } from "../../src/tools/produce.ts"
import { fixturesDir, readFixture } from "../support/fixtures.ts"

const repoRoot = fileURLToPath(new URL("../../", import.meta.url))

interface CliResult {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

/** Runs the CLI the way a person would, with no broker configured in the environment. */
const runCli = (args: ReadonlyArray<string>) =>
  Effect.promise(
    () =>
      new Promise<CliResult>((resolve, reject) => {
        const child = spawn("npx", ["tsx", "src/tools/produce.ts", ...args], {
          cwd: repoRoot,
          env: { ...process.env, KAFKA_BROKERS: "" }
        })
        let stdout = ""
        let stderr = ""
        child.stdout.on("data", (d: Buffer) => (stdout += d.toString("utf8")))
        child.stderr.on("data", (d: Buffer) => (stderr += d.toString("utf8")))
        child.on("error", reject)
        child.on("close", (code) =>
          // npm's own warnings about the machine's config are not the CLI's output.
          resolve({ code, stdout, stderr: stderr.replace(/^npm warn .*\n/gm, "") })
        )
      })
  )

class Cluster extends Context.Tag("Cluster")<Cluster, LocalKafka>() {}
const ClusterLive = Layer.scoped(Cluster, LocalKafka.scoped({ brokers: 1 }))

const kafkaFor = (cluster: LocalKafka) =>
  new Kafka({ clientId: "produce-test", brokers: [...cluster.brokers], logLevel: logLevel.NOTHING })

/** A topic whose size limit lets too_large messages through, as the service's input topic must. */
const createTopic = (cluster: LocalKafka, topic: string) =>
  Effect.acquireUseRelease(
    Effect.promise(async () => {
      const admin = kafkaFor(cluster).admin()
      await admin.connect()
      return admin
    }),
    (admin) =>
      Effect.promise(() =>
        admin.createTopics({
          waitForLeaders: true,
          topics: [
            {
              topic,
              numPartitions: 3,
              configEntries: [{ name: "max.message.bytes", value: String(4 * 1024 * 1024) }]
            }
          ]
        })
      ),
    (admin) => Effect.promise(() => admin.disconnect())
  )

/** Everything on `topic`, read by a fresh consumer group until `expected` messages arrived. */
const consumeAll = (cluster: LocalKafka, topic: string, expected: number) =>
  Effect.gen(function* () {
    const received: Array<KafkaMessage> = []
    yield* Effect.acquireRelease(
      Effect.promise(async () => {
        const consumer: Consumer = kafkaFor(cluster).consumer({
          groupId: `produce-test-${randomUUID()}`,
          maxBytesPerPartition: 8 * 1024 * 1024
        })
        await consumer.connect()
        await consumer.subscribe({ topic, fromBeginning: true })
        await consumer.run({ eachMessage: async ({ message }) => void received.push(message) })
        return consumer
      }),
      (consumer) => Effect.promise(() => consumer.disconnect())
    )
    yield* Effect.try(() => {
      if (received.length < expected) throw new Error(`${received.length} of ${expected} messages so far`)
    }).pipe(
      Effect.retry(Schedule.spaced("250 millis").pipe(Schedule.upTo(Duration.seconds(60)))),
      Effect.orDie
    )
    // Nothing beyond what was expected trickles in.
    yield* Effect.sleep("1 second")
    return received
  }).pipe(Effect.scoped)

const uidOf = (value: Buffer): unknown => {
  try {
    return (JSON.parse(value.toString("utf8")) as { order_uid?: unknown }).order_uid
  } catch {
    return undefined
  }
}

const freePort = () =>
  Effect.promise(
    () =>
      new Promise<number>((resolve) => {
        const server = createServer().listen(0, "127.0.0.1", () => {
          const port = (server.address() as { port: number }).port
          server.close(() => resolve(port))
        })
      })
  )

describe("the producer CLI", () => {
  layer(ClusterLive, { excludeTestServices: true, timeout: "3 minutes" })("against a real broker", (it) => {
    it.effect(
      "sends generated orders with invalid and duplicate ones mixed in, plus a file, keyed by order_uid",
      () =>
        Effect.gen(function* () {
          const cluster = yield* Cluster
          const topic = "orders"
          yield* createTopic(cluster, topic)
          const file = path.join(fixturesDir, "valid", "model.json")
          const result = yield* runCli([
            "--brokers",
            cluster.bootstrapServers,
            "--count",
            "300",
            "--invalid-ratio",
            "0.1",
            "--duplicate-ratio",
            "0.1",
            "--seed",
            "1",
            file
          ])
          expect(result.stderr).toBe("")
          expect(result.code).toBe(0)
          // 30 invalid (all four kinds in turn), 30 re-sends, 240 new orders and the file's.
          expect(result.stdout).toMatch(/^sent +301 messages to orders in [\d.]+ s \(\d+ msgs\/s, seed 1\)$/m)
          expect(result.stdout).toMatch(/^valid +271, of which 30 duplicates$/m)
          expect(result.stdout).toMatch(
            /^invalid +30: invalid_json 8, schema 8, business_rule 7, too_large 7$/m
          )

          const received = yield* consumeAll(cluster, topic, 301)
          expect(received).toHaveLength(301)

          const valid: Array<{ key: string | undefined; uid: string }> = []
          const invalidKinds: Record<string, number> = {}
          for (const message of received) {
            const value = message.value!
            const key = message.key?.toString("utf8")
            const decoded = decodeOrderBytes(value, DEFAULT_MAX_MESSAGE_BYTES)
            if (Either.isRight(decoded)) {
              valid.push({ key, uid: decoded.right.order_uid })
            } else {
              invalidKinds[decoded.left.kind] = (invalidKinds[decoded.left.kind] ?? 0) + 1
              // An invalid message carries its order's id when one can be read, else no key.
              const uid = uidOf(value)
              expect(key).toBe(typeof uid === "string" && uid !== "" ? uid : undefined)
            }
          }
          expect(invalidKinds).toEqual({ invalid_json: 8, schema: 8, business_rule: 7, too_large: 7 })
          expect(valid).toHaveLength(271)
          expect(valid.every((v) => v.key === v.uid)).toBe(true)
          // Each duplicate repeats an order id; the rest are distinct.
          expect(new Set(valid.map((v) => v.uid)).size).toBe(271 - 30)

          const fromFile = received.filter((m) => m.key?.toString("utf8") === "b563feb7b2b84b6test")
          expect(fromFile.length).toBeGreaterThanOrEqual(1)
          expect(fromFile[0]!.value!.equals(readFixture("valid/model.json"))).toBe(true)
        }),
      { timeout: 180_000 }
    )

    it.effect(
      "an .ndjson file is one message per non-empty line, sent as its exact bytes",
      () =>
        Effect.gen(function* () {
          const cluster = yield* Cluster
          const topic = "orders.ndjson"
          yield* createTopic(cluster, topic)
          const orders = generateOrders(2, 99)
          const lines = [JSON.stringify(orders[0]), "", "not json at all", `${JSON.stringify(orders[1])}\r`]
          const dir = yield* Effect.acquireRelease(
            Effect.promise(() => mkdtemp(path.join(tmpdir(), "produce-test-"))),
            (dir) => Effect.promise(() => rm(dir, { recursive: true, force: true }))
          )
          const file = path.join(dir, "orders.ndjson")
          yield* Effect.promise(() => writeFile(file, `${lines.join("\n")}\n`))

          const result = yield* runCli(["--brokers", cluster.bootstrapServers, "--topic", topic, file])
          expect(result.code).toBe(0)
          expect(result.stdout).toMatch(/^sent +3 messages/m)
          expect(result.stdout).toMatch(/^invalid +1: invalid_json 1,/m)

          const received = yield* consumeAll(cluster, topic, 3)
          const byValue = received
            .map((m) => ({ key: m.key?.toString("utf8"), value: m.value!.toString("utf8") }))
            .sort((a, b) => a.value.localeCompare(b.value))
          expect(byValue).toEqual(
            [
              { key: orders[0]!.order_uid, value: lines[0]! },
              { key: undefined, value: "not json at all" },
              { key: orders[1]!.order_uid, value: JSON.stringify(orders[1]) }
            ].sort((a, b) => a.value.localeCompare(b.value))
          )
        }).pipe(Effect.scoped),
      { timeout: 120_000 }
    )
  })

  it.live(
    "an unreachable broker fails with one line and a non-zero exit code",
    () =>
      Effect.gen(function* () {
        const port = yield* freePort()
        const result = yield* runCli(["--brokers", `127.0.0.1:${port}`, "--count", "1"])
        expect(result.code).not.toBe(0)
        expect(result.stderr.trim().split("\n")).toEqual([
          expect.stringMatching(
            new RegExp(`^produce: cannot connect to Kafka at 127\\.0\\.0\\.1:${port} .*ECONNREFUSED`)
          )
        ])
        expect(result.stdout).toBe("")
      }),
    { timeout: 60_000 }
  )

  // A bootstrap file means a developer's service is running: never send it test orders.
  it.live.skipIf(existsSync(BOOTSTRAP_FILE))(
    "without a broker anywhere it says how to get one",
    () =>
      Effect.gen(function* () {
        const result = yield* runCli(["--count", "1"])
        expect(result.code).toBe(1)
        expect(result.stderr).toMatch(/^produce: no Kafka broker to send to: .*npm start.*KAFKA_BROKERS/)
      }),
    { timeout: 60_000 }
  )

  it.live(
    "a bad option is a usage error with exit code 2; --help shows the usage",
    () =>
      Effect.gen(function* () {
        const usage = yield* runCli(["--invalid-ratio", "2"])
        expect(usage.code).toBe(2)
        expect(usage.stderr).toContain("--invalid-ratio must be between 0 and 1")
        const help = yield* runCli(["--help"])
        expect(help.code).toBe(0)
        expect(help.stdout).toContain("Usage: npm run produce -- [options] [files…]")
      }),
    { timeout: 60_000 }
  )
})
