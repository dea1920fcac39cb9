/**
 * Following one order through the traces, as an operator would in a trace viewer: the producer CLI
 * (`npm run produce`) and the service's ingest and dead-letter side send their spans over OTLP to a
 * real receiver (test/support/otlp.ts) on a real broker and PostgreSQL. A good order's trace runs
 * from the producer's send to its store; a bad one's to its parking, and on through its replay; a
 * client reading the order over HTTP continues it, whichever way the request is answered.
 */
import { spawn } from "node:child_process"
import { randomBytes, randomUUID } from "node:crypto"
import { tmpdir } from "node:os"
import path from "node:path"
import { fileURLToPath } from "node:url"
import { describe, expect, it, layer } from "@effect/vitest"
import { Context, Effect, Layer, LogLevel, Option } from "effect"
import { vi } from "vitest"
import * as App from "../../src/App.ts"
import { OrderCache } from "../../src/cache/OrderCache.ts"
import { DeadLetterReplay, type ReplayOptions } from "../../src/deadletters/DeadLetterReplay.ts"
import { HttpAddress } from "../../src/http/HttpServer.ts"
import { KafkaClient } from "../../src/kafka/KafkaClient.ts"
import * as Logging from "../../src/observability/Logging.ts"
import * as Tracing from "../../src/observability/Tracing.ts"
import { TestDatabase } from "../support/database.ts"
import { fixturesDir, readFixture } from "../support/fixtures.ts"
import {
  createTopics,
  eventually,
  freshTopics,
  header,
  produce,
  readTopic,
  testConfig
} from "../support/kafka.ts"
import { findStored } from "../support/orders.ts"
import { otlpReceiver, type OtlpReceiver, type ReceivedSpan } from "../support/otlp.ts"

const repoRoot = fileURLToPath(new URL("../../", import.meta.url))
const topics = freshTopics()

const GOOD = { file: "valid/multi-item-unicode.json", uid: "c7a1e0f2d9b84d3amulti" }
const BAD = { file: "invalid/amount-mismatch.json", uid: "b563feb7b2b84b6test" }

interface CliResult {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

/**
 * `npm run produce` as a person runs it, with no OpenTelemetry settings but `env`'s, and no local
 * broker to fall back on.
 */
const runProduce = (args: ReadonlyArray<string>, env: Record<string, string> = {}) =>
  Effect.promise(
    () =>
      new Promise<CliResult>((resolve, reject) => {
        const inherited = Object.fromEntries(
          Object.entries(process.env).filter(([k]) => !k.startsWith("OTEL_"))
        )
        const child = spawn("npx", ["tsx", "src/tools/produce.ts", ...args], {
          cwd: repoRoot,
          env: {
            ...inherited,
            KAFKA_BROKERS: "",
            KAFKA_LOCAL_DATA_DIR: path.join(tmpdir(), `tracing-test-${randomUUID()}`),
            ...env
          }
        })
        let stdout = ""
        let stderr = ""
        child.stdout.on("data", (d: Buffer) => (stdout += d.toString("utf8")))
        child.stderr.on("data", (d: Buffer) => (stderr += d.toString("utf8")))
        child.on("error", reject)
        child.on("close", (code) => resolve({ code, stdout, stderr }))
      })
  )

class Receiver extends Context.Tag("test/Receiver")<Receiver, OtlpReceiver>() {}
/** What `npm run produce` printed when it sent the two orders. */
class Produced extends Context.Tag("test/Produced")<Produced, CliResult>() {}

/** The service's spans go to the receiver, sent every 100 ms rather than every 5 s. */
const tracing = Layer.unwrapEffect(
  Effect.map(Receiver, (receiver) =>
    Tracing.layer({
      url: receiver.tracesUrl,
      serviceName: "order-service",
      processor: { scheduledDelayMillis: 100 }
    })
  )
)

/** Ingestion, the dead-letter index and replay, as `App` composes them, on this file's topics. */
const service = Layer.unwrapEffect(
  Effect.as(
    createTopics(topics),
    Layer.mergeAll(App.layerIngest(KafkaClient.Default), App.layerDeadLetters(KafkaClient.Default)).pipe(
      Layer.provideMerge(App.layerCore),
      Layer.provideMerge(TestDatabase),
      Layer.provide(testConfig(topics))
    )
  )
)

/** The good order and the bad one, sent by the producer CLI with the receiver as its OTLP endpoint. */
const sent = Layer.effect(
  Produced,
  Effect.flatMap(Receiver, (receiver) =>
    runProduce(
      [
        "--brokers",
        topics.brokers,
        "--topic",
        topics.topic,
        path.join(fixturesDir, GOOD.file),
        path.join(fixturesDir, BAD.file)
      ],
      { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint }
    )
  )
)

/** The service's HTTP side, one server with the order fast path and one without; their URLs. */
class Servers extends Context.Tag("test/Servers")<
  Servers,
  { readonly fast: string; readonly routed: string }
>() {}

/**
 * A server on the same cache and database as ingestion, writing JSON log lines with its access log
 * on, as in production.
 */
const httpServer = (fastPaths: boolean) =>
  Effect.map(
    Layer.build(
      App.layerHttp.pipe(
        Layer.provide(Logging.layer({ format: "json", level: LogLevel.Info })),
        Layer.provide(
          testConfig(topics, {
            http: {
              host: "127.0.0.1",
              port: 0,
              access_log: true,
              shutdown_timeout: "2 seconds",
              fast_paths: fastPaths
            }
          })
        )
      )
    ),
    (context) => Context.get(context, HttpAddress).url
  )

const servers = Layer.scoped(Servers, Effect.all({ fast: httpServer(true), routed: httpServer(false) }))

const stack = sent.pipe(
  Layer.provideMerge(servers),
  Layer.provideMerge(service),
  Layer.provideMerge(tracing),
  Layer.provideMerge(Layer.scoped(Receiver, otlpReceiver))
)

const traceparentOf = (span: ReceivedSpan) => `00-${span.traceId}-${span.spanId}-01`

/** A new W3C id: 16 bytes for a trace, 8 for a span. */
const newId = (bytes: 16 | 8) => randomBytes(bytes).toString("hex")

/** A request as a client in trace `traceId` sends it, from its own span `spanId`; its status. */
const request = (
  url: string,
  trace: { readonly traceId: string; readonly spanId: string },
  init: RequestInit = {}
) =>
  Effect.promise(async () => {
    const response = await fetch(url, {
      ...init,
      headers: { ...init.headers, traceparent: `00-${trace.traceId}-${trace.spanId}-01` }
    })
    await response.arrayBuffer()
    return response.status
  })

/** The JSON log lines written to stdout while `f` runs (it sees them arrive), and its result. */
const loggedDuring = <A, E, R>(
  f: (lines: ReadonlyArray<Record<string, unknown>>) => Effect.Effect<A, E, R>
) =>
  Effect.suspend(() => {
    const lines: Array<Record<string, unknown>> = []
    const write = vi.spyOn(process.stdout, "write").mockImplementation((chunk: string | Uint8Array) => {
      try {
        lines.push(JSON.parse(String(chunk)) as Record<string, unknown>)
      } catch {
        // Not a log line.
      }
      return true
    })
    return f(lines).pipe(
      Effect.map((a) => [a, lines] as const),
      Effect.ensuring(Effect.sync(() => write.mockRestore()))
    )
  })

/** The producer CLI's span for the message keyed `uid`. */
const producerSpan = (receiver: OtlpReceiver, uid: string) =>
  receiver.span(
    `the producer's span of ${uid}`,
    (s) => s.service === "order-producer" && s.attributes["messaging.kafka.message.key"] === uid
  )

/** Every letter on the dead-letter topic for the message keyed `uid`, oldest first. */
const lettersOf = (uid: string) =>
  Effect.map(readTopic(topics.brokers, topics.dlqTopic), (records) =>
    records.filter((r) => r.key?.toString("utf8") === uid)
  )

const replayOptions = (dryRun: boolean): ReplayOptions => ({
  dryRun,
  limit: 10,
  cursor: Option.none(),
  includeReplayed: true,
  requestedBy: "tracing test"
})

layer(stack, { excludeTestServices: true, timeout: "240 seconds" })("one order in the traces", (it) => {
  it.effect(
    "an order's trace runs from the producer's send to its store span, and the batch that stored it links it",
    () =>
      Effect.gen(function* () {
        const receiver = yield* Receiver
        const produced = yield* Produced
        expect(produced.code, produced.stderr).toBe(0)

        const send = yield* producerSpan(receiver, GOOD.uid)
        expect(send).toMatchObject({
          name: `send ${topics.topic}`,
          kind: "producer",
          parentSpanId: undefined
        })
        // The summary names the order's trace, for a person to look up.
        expect(produced.stdout).toContain(`trace ${send.traceId}`)
        // The message carries the producer span's context.
        const [message] = (yield* readTopic(topics.brokers, topics.topic)).filter(
          (r) => r.key?.toString("utf8") === GOOD.uid
        )
        expect(header(message!, "traceparent")).toBe(traceparentOf(send))

        const store = yield* receiver.span(
          "the order's store span, in the producer's trace",
          (s) => s.name === "IngestPipeline.store" && s.traceId === send.traceId
        )
        expect(store).toMatchObject({
          service: "order-service",
          kind: "consumer",
          parentSpanId: send.spanId,
          attributes: { outcome: "stored", order_uid: GOOD.uid, "messaging.destination.name": topics.topic },
          status: { code: "ok" }
        })
        expect(store.startNanos).toBeGreaterThanOrEqual(send.startNanos)
        expect(yield* findStored(GOOD.uid)).toSatisfy(Option.isSome)

        // The batch is a trace of its own, linked both ways: it links the order's context, the
        // order's store span links it.
        expect(store.links).toHaveLength(1)
        const batch = yield* receiver.span(
          "the batch's span that the store span links",
          (s) => s.spanId === store.links[0]!.spanId
        )
        expect(batch.name).toBe("IngestPipeline.batch")
        expect(batch.traceId).not.toBe(send.traceId)
        expect(batch.links).toContainEqual({ traceId: send.traceId, spanId: send.spanId })
        for (const step of ["IngestPipeline.decode", "IngestPipeline.store", "IngestPipeline.cache"]) {
          const child = yield* receiver.span(
            `the batch's ${step} step`,
            (s) => s.name === step && s.parentSpanId === batch.spanId
          )
          expect(child.traceId).toBe(batch.traceId)
        }
      })
  )

  it.effect(
    "a rejected order is parked in its own trace, and its dead letter carries the producer's traceparent",
    () =>
      Effect.gen(function* () {
        const receiver = yield* Receiver
        const send = yield* producerSpan(receiver, BAD.uid)
        const park = yield* receiver.span(
          "the bad order's park span, in the producer's trace",
          (s) =>
            s.name === "IngestPipeline.park" && s.traceId === send.traceId && s.parentSpanId === send.spanId
        )
        expect(park).toMatchObject({
          service: "order-service",
          attributes: { kind: "business_rule" },
          status: { code: "error" }
        })
        yield* eventually(
          "the bad order is parked",
          Effect.map(lettersOf(BAD.uid), (l) => l.length >= 1)
        )
        const [letter] = yield* lettersOf(BAD.uid)
        expect(header(letter!, "traceparent")).toBe(traceparentOf(send))
      })
  )

  it.effect(
    "a replay of the dead letter continues the order's trace: the replay is a child of the producer's span, the next attempt a child of the replay",
    () =>
      Effect.gen(function* () {
        const receiver = yield* Receiver
        const replay = yield* DeadLetterReplay
        const send = yield* producerSpan(receiver, BAD.uid)
        yield* eventually(
          "the bad order is parked",
          Effect.map(lettersOf(BAD.uid), (l) => l.length >= 1)
        )
        const [letter] = yield* lettersOf(BAD.uid)
        const one = { _tag: "One", partition: letter!.partition, offset: letter!.offset } as const
        yield* eventually(
          "the letter is indexed",
          Effect.map(replay.replay(one, replayOptions(true)), (r) => r.letters.length === 1).pipe(
            Effect.orDie
          ),
          60_000
        )
        const result = yield* replay.replay(one, replayOptions(false)).pipe(Effect.orDie)
        expect(result.letters.map((l) => l.outcome)).toEqual(["sent"])

        const replayed = yield* receiver.span(
          "the letter's replay span, a child of the producer's",
          (s) => s.name === "DeadLetterReplay.send" && s.traceId === send.traceId
        )
        expect(replayed).toMatchObject({
          kind: "producer",
          parentSpanId: send.spanId,
          status: { code: "ok" }
        })
        const call = yield* receiver.span(
          "the replay call's span, which the letter's replay links",
          (s) => s.spanId === replayed.links[0]?.spanId
        )
        expect(call).toMatchObject({ name: "DeadLetterReplay.replay", service: "order-service" })

        // Still wrong, the replayed message is parked again — in the same trace, under the replay.
        const parkedAgain = yield* receiver.span(
          "the replayed message's park span, a child of the replay's",
          (s) => s.name === "IngestPipeline.park" && s.parentSpanId === replayed.spanId
        )
        expect(parkedAgain.traceId).toBe(send.traceId)
        yield* eventually(
          "the replayed message is parked again",
          Effect.map(lettersOf(BAD.uid), (l) => l.length >= 2)
        )
        const letters = yield* lettersOf(BAD.uid)
        expect(letters.map((l) => header(l, "traceparent"))).toEqual([
          traceparentOf(send),
          traceparentOf(replayed)
        ])
      })
  )

  it.effect(
    "log lines written inside a span name its trace_id and span_id; with traces off they name none",
    () =>
      Effect.gen(function* () {
        const receiver = yield* Receiver
        const json = Logging.layer({ format: "json", level: LogLevel.Info })
        // The JSON logger writes each line to stdout: kept instead.
        const [, lines] = yield* loggedDuring(() =>
          Effect.gen(function* () {
            yield* Effect.logInfo("traced line").pipe(Effect.withSpan("Test.logged"), Effect.provide(json))
            yield* Effect.logInfo("untraced line").pipe(
              Effect.withSpan("Test.untraced"),
              Effect.provide(json),
              Effect.provideService(Tracing.TracePropagation, undefined)
            )
          })
        )

        const span = yield* receiver.span("the span the line was written in", (s) => s.name === "Test.logged")
        expect(lines.find((l) => l["message"] === "traced line")).toMatchObject({
          trace_id: span.traceId,
          span_id: span.spanId
        })
        const untraced = lines.find((l) => l["message"] === "untraced line")
        expect(untraced).toBeDefined()
        expect(untraced).not.toHaveProperty("trace_id")
        expect(untraced).not.toHaveProperty("span_id")
      })
  )

  it.effect(
    "a client reading the stored order continues its trace: below the router and through it, one server span under the client's, and the access log names it",
    () =>
      Effect.gen(function* () {
        const receiver = yield* Receiver
        const { fast, routed } = yield* Servers
        const send = yield* producerSpan(receiver, GOOD.uid)
        yield* eventually(
          "the order is stored and cached",
          Effect.map(
            Effect.flatMap(OrderCache, (cache) => cache.get(GOOD.uid)),
            Option.isSome
          ),
          45_000
        )
        const ways = [
          ["below the router (a cache hit)", fast],
          ["through the router", routed]
        ] as const
        const clients: Array<string> = []
        for (const [way, base] of ways) {
          const client = { traceId: send.traceId, spanId: newId(8) }
          clients.push(client.spanId)
          const path = `/order/${GOOD.uid}`
          const [status, lines] = yield* loggedDuring((seen) =>
            Effect.zipLeft(
              request(`${base}${path}`, client),
              eventually(
                "the request's access-log line",
                Effect.sync(() => seen.some((l) => l["message"] === "http request" && l["path"] === path))
              )
            )
          )
          expect(status).toBe(200)
          const read = yield* receiver.span(
            `the read's server span, ${way}`,
            (s) => s.parentSpanId === client.spanId
          )
          expect(read, way).toMatchObject({
            service: "order-service",
            name: "GET /order/{order_uid}",
            kind: "server",
            traceId: send.traceId,
            attributes: {
              "http.request.method": "GET",
              "http.route": "/order/{order_uid}",
              "url.path": path,
              order_uid: GOOD.uid,
              "http.response.status_code": 200
            },
            status: { code: "ok" }
          })
          expect(
            lines.find((l) => l["message"] === "http request" && l["path"] === path),
            way
          ).toMatchObject({ status: 200, trace_id: send.traceId, span_id: read.spanId })
        }
        // One span a request, whichever way: the platform's own span per request stays off. A later
        // request's span arrives after any span those two requests made.
        const later = { traceId: newId(16), spanId: newId(8) }
        yield* request(`${routed}/order/${GOOD.uid}`, later)
        yield* receiver.span("a later request's span", (s) => s.parentSpanId === later.spanId)
        for (const client of clients)
          expect(
            receiver
              .spans()
              .filter((s) => s.parentSpanId === client)
              .map((s) => s.name)
          ).toEqual(["GET /order/{order_uid}"])
      })
  )

  it.effect(
    "a search and a replay asked over HTTP get their server spans, the replay's own span under it; /metrics, the probes and the page's files get none",
    () =>
      Effect.gen(function* () {
        const receiver = yield* Receiver
        const { fast } = yield* Servers
        const untraced = newId(16)
        for (const path of ["/metrics", "/healthz", "/readyz", "/order-id.js"])
          yield* request(`${fast}${path}`, { traceId: untraced, spanId: newId(8) })

        const client = { traceId: newId(16), spanId: newId(8) }
        expect(yield* request(`${fast}/orders/search?q=${GOOD.uid}`, client)).toBe(200)
        const search = yield* receiver.span(
          "the search's server span",
          (s) => s.parentSpanId === client.spanId
        )
        expect(search).toMatchObject({
          name: "GET /orders/search",
          kind: "server",
          traceId: client.traceId,
          attributes: { "http.route": "/orders/search", "http.response.status_code": 200 }
        })
        // Those requests ended before the search began; their spans would have been sent first.
        expect(receiver.spans().filter((s) => s.traceId === untraced)).toEqual([])

        const asker = { traceId: newId(16), spanId: newId(8) }
        const replayed = yield* request(`${fast}/dead-letters/replay`, asker, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ dry_run: true })
        })
        expect(replayed).toBe(200)
        const server = yield* receiver.span(
          "the replay request's server span",
          (s) => s.parentSpanId === asker.spanId
        )
        expect(server).toMatchObject({ name: "POST /dead-letters/replay", kind: "server" })
        const call = yield* receiver.span(
          "the replay call's span",
          (s) => s.name === "DeadLetterReplay.replay" && s.traceId === asker.traceId
        )
        expect(call.parentSpanId).toBe(server.spanId)
      })
  )

  it.effect("a message whose traceparent is malformed is stored all the same", () =>
    Effect.gen(function* () {
      const uid = `malformed-${randomUUID().slice(0, 8)}`
      const order = { ...(JSON.parse(readFixture(GOOD.file).toString("utf8")) as object), order_uid: uid }
      yield* produce(topics.brokers, topics.topic, [
        {
          key: uid,
          value: JSON.stringify(order),
          // An all-zero trace id is invalid (W3C trace context), and so is the rest.
          headers: { traceparent: "00-00000000000000000000000000000000-0000000000000000-01", tracestate: "=" }
        }
      ])
      yield* eventually(
        "the order is stored",
        Effect.map(findStored(uid), (found) => Option.isSome(found)),
        45_000
      )
    })
  )
})

describe("without an endpoint nothing is traced", () => {
  it.live(
    "the producer sends orders without a traceparent when no OTLP endpoint is set",
    () =>
      Effect.gen(function* () {
        const quiet = { ...freshTopics(), brokers: topics.brokers }
        yield* createTopics(quiet)
        const produced = yield* runProduce([
          "--brokers",
          quiet.brokers,
          "--topic",
          quiet.topic,
          path.join(fixturesDir, GOOD.file)
        ])
        expect(produced.code, produced.stderr).toBe(0)
        expect(produced.stdout).not.toContain("trace ")
        const records = yield* readTopic(quiet.brokers, quiet.topic)
        expect(records).toHaveLength(1)
        expect(records[0]!.headers ?? {}).not.toHaveProperty("traceparent")
      }),
    120_000
  )

  it("the settings are read the standard way: an endpoint turns traces on, and nothing else does", () => {
    expect(Tracing.optionsFromEnv("order-service", {})).toBeUndefined()
    expect(
      Tracing.optionsFromEnv("order-service", { OTEL_SERVICE_NAME: "x", OTEL_TRACES_SAMPLER: "always_on" })
    ).toBeUndefined()
    expect(
      Tracing.optionsFromEnv("order-service", { OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318/" })
    ).toMatchObject({
      url: "http://collector:4318/v1/traces",
      serviceName: "order-service"
    })
    // The signal's own endpoint is used as it is, and wins.
    expect(
      Tracing.optionsFromEnv("order-service", {
        OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318",
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "http://jaeger:4318/custom"
      })?.url
    ).toBe("http://jaeger:4318/custom")
    // The name: OTEL_SERVICE_NAME, else service.name among the resource attributes, else the default.
    const env = { OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318" }
    expect(
      Tracing.optionsFromEnv("order-service", {
        ...env,
        OTEL_RESOURCE_ATTRIBUTES: "service.name=from-attributes,deployment.environment=staging%20eu"
      })
    ).toMatchObject({
      serviceName: "from-attributes",
      resourceAttributes: { "deployment.environment": "staging eu" }
    })
    expect(
      Tracing.optionsFromEnv("order-service", {
        ...env,
        OTEL_SERVICE_NAME: "orders-eu",
        OTEL_RESOURCE_ATTRIBUTES: "service.name=from-attributes"
      })?.serviceName
    ).toBe("orders-eu")
    // Switched off explicitly, an endpoint does not turn it on.
    expect(Tracing.optionsFromEnv("order-service", { ...env, OTEL_SDK_DISABLED: "true" })).toBeUndefined()
    expect(Tracing.optionsFromEnv("order-service", { ...env, OTEL_TRACES_EXPORTER: "none" })).toBeUndefined()
  })
})
