/**
 * Replay as the service runs it (a real process, signed-in as an operator's API key), for what the
 * README promises around it: until its Kafka producer is connected a replay answers 503 (the API
 * is up before Kafka is); every call logs one line saying who asked, what it selected and what
 * came of it; a letter the broker refuses is counted in `dead_letters_replayed_total` as `failed`.
 *
 * The service reaches Kafka through a gate the test opens: closed, every connection is dropped.
 */
import { connect, createServer, type Socket } from "node:net"
import { randomBytes } from "node:crypto"
import { expect, layer } from "@effect/vitest"
import { Context, Effect, Layer, Redacted } from "effect"
import { ConfigResourceTypes } from "kafkajs"
import * as Database from "../../src/db/Database.ts"
import { DeadLetterIndex, letterFromMessage } from "../../src/deadletters/DeadLetterIndex.ts"
import { toKafkaMessage, type DeadLetter } from "../../src/kafka/DeadLetters.ts"
import type { OrderJson } from "../../src/orders/Order.ts"
import { API_KEYS, apiKeysConfig } from "../support/auth.ts"
import { createTestDatabase } from "../support/database.ts"
import { readFixture, readFixtureJson } from "../support/fixtures.ts"
import { eventually, freshTopics, kafkaFor, produce, readTopic, topicEnds } from "../support/kafka.ts"
import { deltaOf, parseMetrics } from "../support/metrics.ts"
import { logLinesIn, scopedService, serviceEnv, serviceUrl, type ServiceProcess } from "../support/service.ts"

/** The orders topic takes records up to this size: a larger replayed letter is refused. */
const ORDERS_MAX_MESSAGE_BYTES = 16_384

const OPERATOR = { authorization: `Bearer ${API_KEYS.operator}` }

interface Gate {
  readonly port: number
  readonly open: () => void
}

/** A TCP relay to `target` that drops every connection until opened. */
const kafkaGate = (target: string) =>
  Effect.acquireRelease(
    Effect.promise(
      () =>
        new Promise<Gate & { readonly close: () => void }>((resolve) => {
          const [host, port] = [target.slice(0, target.lastIndexOf(":")), Number(target.split(":").at(-1))]
          const sockets = new Set<Socket>()
          let open = false
          const server = createServer((client) => {
            if (!open) return void client.destroy()
            const upstream = connect({ host, port })
            for (const [from, to] of [
              [client, upstream],
              [upstream, client]
            ] as const) {
              sockets.add(from)
              from.pipe(to)
              from.on("error", () => to.destroy())
              from.on("close", () => {
                sockets.delete(from)
                to.destroy()
              })
            }
          })
          server.listen(0, "127.0.0.1", () =>
            resolve({
              port: (server.address() as { port: number }).port,
              open: () => (open = true),
              close: () => {
                for (const s of sockets) s.destroy()
                server.close()
              }
            })
          )
        })
    ),
    (gate) => Effect.sync(() => gate.close())
  )

class ReplayService extends Context.Tag("test/ReplayService")<
  ReplayService,
  {
    readonly url: string
    readonly service: ServiceProcess
    readonly gate: Gate
    readonly topics: ReturnType<typeof freshTopics>
    readonly databaseUrl: string
  }
>() {}

/** The service on fresh topics and a database, its Kafka behind a closed gate; listening. */
const serviceLayer = Layer.scoped(
  ReplayService,
  Effect.gen(function* () {
    const topics = freshTopics()
    const databaseUrl = yield* createTestDatabase
    yield* Effect.promise(async () => {
      const kafka = kafkaFor(topics.brokers)
      const admin = kafka.admin()
      await admin.connect()
      try {
        await admin.createTopics({
          waitForLeaders: true,
          topics: [
            {
              topic: topics.topic,
              numPartitions: 3,
              replicationFactor: 1,
              configEntries: [{ name: "max.message.bytes", value: String(ORDERS_MAX_MESSAGE_BYTES) }]
            },
            { topic: topics.dlqTopic, numPartitions: 3, replicationFactor: 1 }
          ]
        })
        const { resources } = await admin.describeConfigs({
          includeSynonyms: false,
          resources: [
            { type: ConfigResourceTypes.TOPIC, name: topics.topic, configNames: ["max.message.bytes"] }
          ]
        })
        expect(resources[0]?.configEntries[0]?.configValue).toBe(String(ORDERS_MAX_MESSAGE_BYTES))
      } finally {
        await admin.disconnect()
      }
      for (const topic of [topics.topic, topics.dlqTopic]) await topicEnds(kafka, topic)
    })
    const gate = yield* kafkaGate(topics.brokers.split(",")[0]!)
    const service = yield* scopedService(
      serviceEnv(topics, databaseUrl, {
        KAFKA_BROKERS: `127.0.0.1:${gate.port}`,
        AUTH_MODE: "required",
        AUTH_API_KEYS: apiKeysConfig
      })
    )
    const url = yield* serviceUrl(service)
    return { url, service, gate, topics, databaseUrl }
  })
)

/** Parks `letter` on the dead-letter topic as the service would, on partition 0; its offset. */
const park = (letter: DeadLetter) =>
  Effect.gen(function* () {
    const { topics } = yield* ReplayService
    const m = toKafkaMessage(letter, new Date())
    yield* produce(
      topics.brokers,
      topics.dlqTopic,
      [{ key: letter.key?.toString() ?? null, value: m.value, headers: m.headers }],
      0
    )
    const records = yield* readTopic(topics.brokers, topics.dlqTopic)
    return records.find((r) => r.key?.toString() === letter.key?.toString())!
  })

const request = (path: string, init: RequestInit = {}) =>
  Effect.flatMap(ReplayService, ({ url }) =>
    Effect.promise(async () => {
      const response = await fetch(`${url}${path}`, {
        ...init,
        headers: { accept: "application/json", ...OPERATOR, ...(init.headers as Record<string, string>) },
        // A replay that waits for Kafka instead of answering fails the test rather than hanging it.
        signal: AbortSignal.timeout(15_000)
      }).catch((error: unknown) => {
        throw new Error(`${init.method ?? "GET"} ${path} was not answered within 15 s`, { cause: error })
      })
      const text = await response.text()
      return { status: response.status, text, json: () => JSON.parse(text) }
    })
  )

const replay = (body: object) =>
  request("/dead-letters/replay", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body)
  })

/** Replays `body` once the producer is connected: opens the gate, and asks again while it answers 503. */
const replayOnceConnected = (body: object) =>
  Effect.gen(function* () {
    const { gate } = yield* ReplayService
    gate.open()
    let answer = yield* replay(body)
    const deadline = Date.now() + 90_000
    while (answer.status === 503 && Date.now() < deadline) {
      yield* Effect.sleep("250 millis")
      answer = yield* replay(body)
    }
    return answer
  })

/** The service's log lines (JSON) with `message`. */
const logged = (message: string) =>
  Effect.map(ReplayService, ({ service }) =>
    logLinesIn(service.output()).filter((l) => l["message"] === message)
  )

/** The one log line with `message` whose selection is the letter at `offset` (waiting for it). */
const lineFor = (message: string, offset: string) =>
  Effect.gen(function* () {
    const forLetter = Effect.map(logged(message), (lines) =>
      lines.filter((l) => JSON.stringify(l["selection"]) === JSON.stringify({ partition: 0, offset }))
    )
    yield* eventually(
      `"${message}" is logged for the letter at 0/${offset}`,
      Effect.map(forLetter, (lines) => lines.length > 0),
      10_000
    )
    const lines = yield* forLetter
    expect(lines).toHaveLength(1)
    return lines[0]!
  })

const metrics = Effect.map(request("/metrics"), (r) => {
  expect(r.status, r.text).toBe(200)
  return parseMetrics(r.text)
})

/** Waits until the service has indexed the letter at `offset` of partition 0. */
const indexed = (offset: string) =>
  eventually(
    `the letter at 0/${offset} is indexed`,
    Effect.map(request(`/dead-letters/0/${offset}`), (r) => r.status === 200),
    60_000
  )

const model = readFixtureJson("valid/model.json") as OrderJson

layer(serviceLayer, { excludeTestServices: true, timeout: "180 seconds" })(
  "replay in the running service",
  (it) => {
    it.effect(
      "until the service's Kafka producer is connected a replay answers 503 (a dry run answers); once it is, the letter is sent and its order stored",
      () =>
        Effect.gen(function* () {
          const { topics, databaseUrl, url } = yield* ReplayService
          // A conflict whose stored order has since been removed: replayed, it is stored.
          const uid = `${randomBytes(4).toString("hex")}-before-kafka`
          const record = yield* park({
            kind: "conflict",
            detail: "a different order is already stored under this order_uid",
            key: Buffer.from(uid),
            value: Buffer.from(JSON.stringify({ ...model, order_uid: uid })),
            source: { topic: topics.topic, partition: 0, offset: "0" }
          })
          // The index has it (its reader is still waiting for Kafka, as the service is).
          yield* Effect.flatMap(DeadLetterIndex, (index) =>
            index.upsert([letterFromMessage(0, record)])
          ).pipe(
            Effect.provide(
              DeadLetterIndex.Default.pipe(
                Layer.provide(Database.layer({ url: Redacted.make(databaseUrl), maxConnections: 1 }))
              )
            )
          )
          const one = { partition: 0, offset: record.offset }

          const early = yield* replay(one)
          expect(early.status, early.text).toBe(503)
          expect(early.json()).toMatchObject({
            error: "unavailable",
            message: expect.stringContaining("Kafka")
          })
          const dry = yield* replay({ ...one, dry_run: true })
          expect(dry.status, dry.text).toBe(200)
          expect(dry.json()).toMatchObject({ dry_run: true, selected: 1, sent: 0 })

          const sent = yield* replayOnceConnected(one)
          expect(sent.status, sent.text).toBe(200)
          expect(sent.json()).toMatchObject({
            dry_run: false,
            selected: 1,
            sent: 1,
            failed: 0,
            letters: [{ partition: 0, offset: record.offset, kind: "conflict", outcome: "sent" }]
          })
          yield* eventually(
            "the replayed order is served",
            Effect.promise(() => fetch(`${url}/order/${uid}`).then((r) => r.status === 200)),
            60_000
          )
        })
    )

    it.effect(
      "each call logs one line naming who asked, its selection, how many letters it takes in and how many were sent or refused",
      () =>
        Effect.gen(function* () {
          const { topics } = yield* ReplayService
          const key = `${randomBytes(4).toString("hex")}-logged`
          const record = yield* park({
            kind: "schema",
            detail: "payment.amount: Expected number",
            key: Buffer.from(key),
            value: readFixture("invalid/amount-as-string.json"),
            source: { topic: topics.topic, partition: 1, offset: "7" }
          })
          // The service's own reader of the dead-letter topic indexes it, once Kafka is reachable.
          const { gate } = yield* ReplayService
          gate.open()
          yield* indexed(record.offset)
          const one = { partition: 0, offset: record.offset }
          const dry = yield* replay({ ...one, dry_run: true })
          expect(dry.status, dry.text).toBe(200)
          const sent = yield* replayOnceConnected(one)
          expect(sent.json()).toMatchObject({ sent: 1, failed: 0 })

          const who = "api-key:tests-operator"
          expect(yield* lineFor("Dead letters replay (dry run)", record.offset)).toMatchObject({
            level: "info",
            requested_by: who,
            selection: { partition: 0, offset: record.offset },
            selected: 1,
            page: 1,
            sent: 0,
            failed: 0
          })
          expect(yield* lineFor("Dead letters replayed", record.offset)).toMatchObject({
            level: "info",
            requested_by: who,
            selection: { partition: 0, offset: record.offset },
            selected: 1,
            page: 1,
            sent: 1,
            failed: 0
          })
        })
    )

    it.effect(
      "a letter the broker refuses (larger than the orders topic takes) is answered failed, counted in dead_letters_replayed_total{outcome=failed} and logged",
      () =>
        Effect.gen(function* () {
          const { topics } = yield* ReplayService
          // Parked while the orders topic took larger messages; since lowered.
          const key = `${randomBytes(4).toString("hex")}-too-large`
          const record = yield* park({
            kind: "too_large",
            detail: "the message is larger than ingest.max_message_bytes",
            key: Buffer.from(key),
            value: Buffer.alloc(ORDERS_MAX_MESSAGE_BYTES + 4_096, 0x61),
            source: { topic: topics.topic, partition: 2, offset: "3" }
          })
          // The service's own reader of the dead-letter topic indexes it, once Kafka is reachable.
          const { gate } = yield* ReplayService
          gate.open()
          yield* indexed(record.offset)
          const one = { partition: 0, offset: record.offset }

          const before = yield* metrics
          const answer = yield* replayOnceConnected(one)
          expect(answer.status, answer.text).toBe(200)
          expect(answer.json()).toMatchObject({
            selected: 1,
            sent: 0,
            failed: 1,
            letters: [{ partition: 0, offset: record.offset, kind: "too_large", outcome: "failed" }]
          })
          const delta = deltaOf(before, yield* metrics)
          expect(delta("dead_letters_replayed_total", { kind: "too_large", outcome: "failed" })).toBe(1)
          expect(delta("dead_letters_replayed_total", { kind: "too_large", outcome: "sent" })).toBe(0)
          expect(yield* lineFor("Dead letters replayed", record.offset)).toMatchObject({
            requested_by: "api-key:tests-operator",
            selected: 1,
            sent: 0,
            failed: 1
          })
          // Refused, it is let go as it was: a later replay takes it again.
          const again = yield* replay({ ...one, dry_run: true })
          expect(again.json()).toMatchObject({ selected: 1, already_replayed: 0 })
        })
    )
  }
)
