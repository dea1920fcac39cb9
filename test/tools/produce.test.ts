import { describe, expect, it } from "@effect/vitest"
import { Effect, Either } from "effect"
import { spawn } from "node:child_process"
import { randomUUID } from "node:crypto"
import { mkdtemp, rm, writeFile } from "node:fs/promises"
import { createServer } from "node:net"
import { tmpdir } from "node:os"
import path from "node:path"
import { fileURLToPath } from "node:url"
import { inject } from "vitest"
import { decodeOrderBytes } from "../../src/orders/OrderDecoder.ts"
import { DEFAULT_MAX_MESSAGE_BYTES, generateOrders } from "../../src/tools/OrderGenerator.ts"
import { fixturesDir, readFixture } from "../support/fixtures.ts"
import { kafkaFor, readToEnd, topicEnds } from "../support/kafka.ts"

const repoRoot = fileURLToPath(new URL("../../", import.meta.url))

/** The run's broker. */
const brokers = inject("kafkaBrokers")

/**
 * A local Kafka data directory that does not exist: the CLI finds no bootstrap file there, so a
 * developer's running service (which leaves one in .data/kafka) is never sent test orders.
 */
const noLocalBroker = path.join(tmpdir(), `produce-test-${randomUUID()}`)

interface CliResult {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

/**
 * Runs the CLI the way a person would. By default it has no broker at all (no KAFKA_BROKERS, no
 * local broker's bootstrap file); `env` gives it one.
 */
const runCli = (args: ReadonlyArray<string>, env: Record<string, string> = {}) =>
  Effect.promise(
    () =>
      new Promise<CliResult>((resolve, reject) => {
        const child = spawn("npx", ["tsx", "src/tools/produce.ts", ...args], {
          cwd: repoRoot,
          env: { ...process.env, KAFKA_BROKERS: "", KAFKA_LOCAL_DATA_DIR: noLocalBroker, ...env }
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

/**
 * A fresh topic on the run's broker whose size limit lets too_large messages through, as the
 * service's input topic must; returned once its leader serves it.
 */
const createTopic = () =>
  Effect.promise(async () => {
    const topic = `produce-${randomUUID().slice(0, 8)}`
    const kafka = kafkaFor(brokers)
    const admin = kafka.admin()
    await admin.connect()
    try {
      await admin.createTopics({
        waitForLeaders: true,
        topics: [
          {
            topic,
            numPartitions: 3,
            configEntries: [{ name: "max.message.bytes", value: String(4 * 1024 * 1024) }]
          }
        ]
      })
    } finally {
      await admin.disconnect()
    }
    await topicEnds(kafka, topic)
    return topic
  })

/** Everything on `topic`, read to its end offsets. */
const consumeAll = (topic: string) => Effect.promise(() => readToEnd(kafkaFor(brokers), topic))

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
  describe("against the run's broker", () => {
    it.live(
      "sends generated orders with invalid and duplicate ones mixed in, plus a file, keyed by order_uid",
      () =>
        Effect.gen(function* () {
          const topic = yield* createTopic()
          const file = path.join(fixturesDir, "valid", "model.json")
          const args = [
            "--topic",
            topic,
            "--count",
            "300",
            "--invalid-ratio",
            "0.1",
            "--duplicate-ratio",
            "0.1",
            "--seed",
            "1",
            file
          ]
          // The broker from the environment, as when KAFKA_BROKERS is exported.
          const result = yield* runCli(args, { KAFKA_BROKERS: brokers })
          expect(result.stderr).toBe("")
          expect(result.code).toBe(0)
          // 30 invalid (all four kinds in turn), 30 re-sends, 240 new orders and the file's.
          expect(result.stdout).toMatch(
            new RegExp(`^sent +301 messages to ${topic} in [\\d.]+ s \\(\\d+ msgs/s, seed 1\\)$`, "m")
          )
          expect(result.stdout).toMatch(/^valid +271, of which 30 duplicates$/m)
          expect(result.stdout).toMatch(
            /^invalid +30: invalid_json 8, schema 8, business_rule 7, too_large 7$/m
          )

          const received = yield* consumeAll(topic)
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

          // It names a few orders it sent, each with its track number, to look up on the page:
          // the file's order first, then generated ones.
          const tryLines = result.stdout.split("\n").filter((line) => /^ {13}\S/.test(line))
          expect(result.stdout).toMatch(/^try +these on the page/m)
          expect(tryLines).toHaveLength(3)
          const named = tryLines.map((line) => line.trim().split(/ +/))
          expect(named[0]).toEqual(["b563feb7b2b84b6test", "WBILMTESTTRACK"])
          const sentOrders = new Map(
            received.flatMap((m) => {
              const decoded = decodeOrderBytes(m.value!, DEFAULT_MAX_MESSAGE_BYTES)
              return Either.isRight(decoded) ? [[decoded.right.order_uid, decoded.right.track_number]] : []
            })
          )
          for (const [uid, track] of named) expect(sentOrders.get(uid!)).toBe(track)

          const fromFile = received.filter((m) => m.key?.toString("utf8") === "b563feb7b2b84b6test")
          expect(fromFile.length).toBeGreaterThanOrEqual(1)
          expect(fromFile[0]!.value!.equals(readFixture("valid/model.json"))).toBe(true)
        }),
      { timeout: 180_000 }
    )

    it.live(
      "an .ndjson file is one message per non-empty line, sent as its exact bytes",
      () =>
        Effect.gen(function* () {
          const topic = yield* createTopic()
          const orders = generateOrders(2, 99)
          const lines = [JSON.stringify(orders[0]), "", "not json at all", `${JSON.stringify(orders[1])}\r`]
          const dir = yield* Effect.acquireRelease(
            Effect.promise(() => mkdtemp(path.join(tmpdir(), "produce-test-"))),
            (dir) => Effect.promise(() => rm(dir, { recursive: true, force: true }))
          )
          const file = path.join(dir, "orders.ndjson")
          yield* Effect.promise(() => writeFile(file, `${lines.join("\n")}\n`))

          const result = yield* runCli(["--brokers", brokers, "--topic", topic, file])
          expect(result.code).toBe(0)
          expect(result.stdout).toMatch(/^sent +3 messages/m)
          expect(result.stdout).toMatch(/^invalid +1: invalid_json 1,/m)

          const received = yield* consumeAll(topic)
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

    it.live(
      "without KAFKA_BROKERS it sends to the local broker whose address a running service left",
      () =>
        Effect.gen(function* () {
          const topic = yield* createTopic()
          const dataDir = yield* Effect.acquireRelease(
            Effect.promise(() => mkdtemp(path.join(tmpdir(), "produce-test-data-"))),
            (dir) => Effect.promise(() => rm(dir, { recursive: true, force: true }))
          )
          yield* Effect.promise(() => writeFile(path.join(dataDir, "bootstrap"), `${brokers}\n`))
          const result = yield* runCli(["--topic", topic, "--count", "5", "--seed", "3"], {
            KAFKA_LOCAL_DATA_DIR: dataDir
          })
          expect(result.stderr).toBe("")
          expect(result.code).toBe(0)
          expect(result.stdout).toMatch(/^sent +5 messages/m)
          expect(yield* consumeAll(topic)).toHaveLength(5)
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

  it.live(
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
