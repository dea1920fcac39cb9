/**
 * `npm run produce -- [options] [files…]`: sends orders to the service's Kafka topic — generated
 * ones, invalid and duplicate ones mixed in on request, and the messages in files. With an OTLP
 * endpoint in the environment (src/observability/Tracing.ts), each message starts a trace: a
 * producer span, whose context the message carries in its `traceparent` header.
 */
import { NodeRuntime } from "@effect/platform-node"
import { SingleBar } from "cli-progress"
import { Cause, Clock, Console, Data, Effect, Either, Exit, Fiber, type Tracer } from "effect"
import { CompressionTypes, Kafka, logLevel, Partitioners, type Message, type Producer } from "kafkajs"
import { existsSync } from "node:fs"
import { readFile } from "node:fs/promises"
import path from "node:path"
import { pathToFileURL } from "node:url"
import "../kafka/kafkajsRequestQueue.ts"
import { bootstrapFileOf } from "../local/bootstrapFile.ts"
import { projectRoot } from "../projectRoot.ts"
import { decodeOrderBytes, type OrderRejected } from "../orders/OrderDecoder.ts"
import { DecodeRejectionKinds } from "../orders/Rejection.ts"
import { BROKER_LIST_EXPECTED, isBrokerList, splitBrokerList } from "../config/AppConfig.ts"
import { describeKafkaError, hasErrorType, KafkaError } from "../kafka/KafkaError.ts"
import * as Tracing from "../observability/Tracing.ts"
import { DEFAULT_MAX_MESSAGE_BYTES, generateOrder, makeFaker, makeInvalid } from "./OrderGenerator.ts"
import { parseCommandLine, UsageError } from "./CommandLine.ts"

export const USAGE = `Usage: npm run produce -- [options] [files…]

Sends orders to the service's Kafka topic: generated ones (--count) and the messages in
files. A .json file is one message, sent as its exact bytes; each non-empty line of a
.ndjson file is one message; any other file is one message. A message's key is its
order_uid when that can be read.

Options:
  --brokers host:port,…   Kafka bootstrap servers (default: $KAFKA_BROKERS, else the
                          local broker that \`npm start\` runs, from .data/kafka/bootstrap,
                          or bootstrap in $KAFKA_LOCAL_DATA_DIR when that is set)
  --topic name            topic to send to (default: orders)
  --count N               messages to generate (default: 10 without files, 0 with files)
  --rate R                messages per second, 0 = as fast as possible (default: 0)
  --invalid-ratio x       share of generated messages that are invalid, of all kinds in
                          turn: invalid_json, schema, business_rule, too_large (0..1, default: 0)
  --duplicate-ratio x     share of generated messages that re-send an order sent before
                          (0..1, default: 0)
  --seed S                generator seed; the same seed sends the same messages (default: random)
  --batch-size N          messages per send (default: 500)
  --max-message-bytes N   the service's message size limit; too_large messages are one byte
                          over it (default: ${DEFAULT_MAX_MESSAGE_BYTES})
  -h, --help              show this text

Examples:
  npm run produce -- --count 1000
  npm run produce -- --count 100000 --rate 2000 --invalid-ratio 0.05 --duplicate-ratio 0.05
  npm run produce -- ../shared/data/orders/valid/model.json more-orders.ndjson

Tracing: with OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) set, each
message starts a trace (service order-producer unless OTEL_SERVICE_NAME says otherwise) and
carries its context in a traceparent header; the summary names the example orders' traces.

Exit status: 0 when every message was acknowledged or, for a too_large one, refused by
the broker as too large (the summary says how many); 1 on an error; 2 on a usage error.`

/** No usable broker list: none given, unreadable, or not host:port. */
class BrokerListError extends Data.TaggedError("BrokerListError")<{ readonly message: string }> {}
class FileError extends Data.TaggedError("FileError")<{ readonly message: string }> {}

type ProduceError = UsageError | BrokerListError | FileError | KafkaError

interface Options {
  readonly brokers: string | undefined
  readonly topic: string
  readonly count: number
  readonly rate: number
  readonly invalidRatio: number
  readonly duplicateRatio: number
  readonly seed: number
  readonly batchSize: number
  readonly maxMessageBytes: number
  readonly files: ReadonlyArray<string>
  readonly help: boolean
}

const number = (
  name: string,
  raw: string | undefined,
  fallback: number,
  check: (n: number) => boolean,
  want: string
) => {
  if (raw === undefined) return Effect.succeed(fallback)
  const n = Number(raw)
  return raw.trim() !== "" && Number.isFinite(n) && check(n)
    ? Effect.succeed(n)
    : Effect.fail(new UsageError({ message: `--${name} must be ${want}, got ${JSON.stringify(raw)}` }))
}
const isCount = (n: number) => Number.isSafeInteger(n) && n >= 0
const isRatio = (n: number) => n >= 0 && n <= 1

const parseOptions = (argv: ReadonlyArray<string>): Effect.Effect<Options, UsageError> =>
  Effect.gen(function* () {
    const parsed = yield* parseCommandLine(argv, {
      brokers: { type: "string" },
      topic: { type: "string" },
      count: { type: "string" },
      rate: { type: "string" },
      "invalid-ratio": { type: "string" },
      "duplicate-ratio": { type: "string" },
      seed: { type: "string" },
      "batch-size": { type: "string" },
      "max-message-bytes": { type: "string" },
      help: { type: "boolean", short: "h" }
    })
    const v = parsed.values
    const files = parsed.positionals
    const options: Options = {
      brokers: v.brokers,
      topic: v.topic ?? "orders",
      count: yield* number("count", v.count, files.length === 0 ? 10 : 0, isCount, "a whole number ≥ 0"),
      rate: yield* number("rate", v.rate, 0, (n) => n >= 0, "a number ≥ 0"),
      invalidRatio: yield* number("invalid-ratio", v["invalid-ratio"], 0, isRatio, "between 0 and 1"),
      duplicateRatio: yield* number("duplicate-ratio", v["duplicate-ratio"], 0, isRatio, "between 0 and 1"),
      seed: yield* number(
        "seed",
        v.seed,
        Math.floor(Math.random() * 2 ** 31),
        Number.isSafeInteger,
        "a whole number"
      ),
      batchSize: yield* number(
        "batch-size",
        v["batch-size"],
        500,
        (n) => isCount(n) && n > 0,
        "a whole number ≥ 1"
      ),
      maxMessageBytes: yield* number(
        "max-message-bytes",
        v["max-message-bytes"],
        DEFAULT_MAX_MESSAGE_BYTES,
        (n) => isCount(n) && n > 0,
        "a whole number ≥ 1"
      ),
      files,
      help: v.help ?? false
    }
    if (options.topic === "") return yield* new UsageError({ message: "--topic must not be empty" })
    if (options.invalidRatio + options.duplicateRatio > 1) {
      return yield* new UsageError({ message: "--invalid-ratio and --duplicate-ratio add up to more than 1" })
    }
    return options
  })

/** Where the bootstrap list came from, so an error can say what to fix. */
interface Brokers {
  readonly list: ReadonlyArray<string>
  readonly source: string
  /** Read from the file a running service leaves: if nothing answers, the service may be down. */
  readonly fromFile?: boolean
}

/**
 * Where the service writes the address of the local broker it starts: in its local Kafka data
 * directory, `.data/kafka` under `npm start` unless KAFKA_LOCAL_DATA_DIR says otherwise.
 */
export const bootstrapFile = (): string => {
  const dataDir = process.env["KAFKA_LOCAL_DATA_DIR"]?.trim() || path.join(".data", "kafka")
  return bootstrapFileOf(path.resolve(projectRoot, dataDir))
}

const resolveBrokers = (flag: string | undefined): Effect.Effect<Brokers, BrokerListError> =>
  Effect.gen(function* () {
    if (flag !== undefined) return { list: splitBrokerList(flag), source: "--brokers" }
    const env = process.env["KAFKA_BROKERS"]
    if (env !== undefined && env.trim() !== "") return { list: splitBrokerList(env), source: "KAFKA_BROKERS" }
    const file = bootstrapFile()
    if (existsSync(file)) {
      const text = yield* Effect.tryPromise({
        try: () => readFile(file, "utf8"),
        catch: (e) => new BrokerListError({ message: `cannot read ${file}: ${(e as Error).message}` })
      })
      return { list: splitBrokerList(text), source: `${file} (the service's local broker)`, fromFile: true }
    }
    return yield* new BrokerListError({
      message:
        "no Kafka broker to send to: start the service with `npm start` (it runs a local broker), set KAFKA_BROKERS, or pass --brokers host:port"
    })
  }).pipe(
    Effect.filterOrFail(
      (b) => isBrokerList(b.list),
      (b) =>
        new BrokerListError({
          message:
            b.list.length === 0
              ? `the broker list from ${b.source} is empty`
              : `the broker list from ${b.source} (${b.list.join(",")}): ${BROKER_LIST_EXPECTED}`
        })
    )
  )

/** What a message is, as the service will judge it. */
type Kind = "valid" | "duplicate" | OrderRejected["kind"]

interface Outgoing {
  readonly key: string | null
  readonly value: Buffer
  readonly kind: Kind
  /** A valid order's ids, to print a few once it was sent. */
  readonly ids?: SentIds
}

/** What a person can look an order up by on the page (and its trace, when traced). */
interface SentIds {
  readonly orderUid: string
  readonly trackNumber: string
  readonly traceId?: string
}

/** The order's `order_uid` when the message is a JSON object that has one. */
const keyOf = (bytes: Uint8Array): string | null => {
  try {
    const value: unknown = JSON.parse(
      Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("utf8")
    )
    if (typeof value === "object" && value !== null && !Array.isArray(value)) {
      const uid = (value as Record<string, unknown>)["order_uid"]
      if (typeof uid === "string" && uid !== "") return uid
    }
  } catch {
    // Not JSON: sent without a key.
  }
  return null
}

const toBuffer = (bytes: Uint8Array) => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)

/** The messages in a file: the whole file, or each non-empty line of an `.ndjson`/`.jsonl` file. */
const splitFile = (name: string, content: Buffer): Array<Buffer> => {
  if (!/\.(ndjson|jsonl)$/i.test(name)) return [content]
  const out: Array<Buffer> = []
  let start = 0
  while (start <= content.length) {
    let end = content.indexOf(0x0a, start)
    if (end === -1) end = content.length
    let line = content.subarray(start, end)
    if (line.length > 0 && line[line.length - 1] === 0x0d) line = line.subarray(0, line.length - 1)
    if (line.toString("utf8").trim() !== "") out.push(line)
    start = end + 1
  }
  return out
}

const readMessageFiles = (files: ReadonlyArray<string>, maxMessageBytes: number) =>
  Effect.forEach(files, (file) =>
    Effect.tryPromise({
      // `npm run` starts us in the project root; the user's paths are relative to where they typed.
      try: () =>
        readFile(
          path.resolve(
            process.env["npm_lifecycle_event"] === "produce" ? (process.env["INIT_CWD"] ?? ".") : ".",
            file
          )
        ),
      catch: (e) => new FileError({ message: `cannot read ${file}: ${(e as Error).message}` })
    }).pipe(
      Effect.map((content) =>
        splitFile(file, content).map((value): Outgoing => {
          const decoded = decodeOrderBytes(value, maxMessageBytes)
          return Either.isRight(decoded)
            ? {
                key: keyOf(value),
                value,
                kind: "valid",
                ids: { orderUid: decoded.right.order_uid, trackNumber: decoded.right.track_number }
              }
            : { key: keyOf(value), value, kind: decoded.left.kind }
        })
      )
    )
  ).pipe(Effect.map((perFile) => perFile.flat()))

/** Sent orders that duplicates are drawn from; bounded so long runs keep a flat memory profile. */
const DUPLICATE_POOL_SIZE = 10_000

/**
 * The generated messages: exact shares of invalid and duplicate messages at seeded random
 * positions, invalid kinds in turn so every kind is present. Duplicates are drawn from `pool`
 * (valid orders from files) and the orders generated before them.
 */
function* generated(options: Options, pool: Array<Outgoing>): Generator<Outgoing> {
  const f = makeFaker(options.seed)
  const remember = (m: Outgoing) => {
    if (pool.length < DUPLICATE_POOL_SIZE) pool.push(m)
    else pool[f.number.int({ min: 0, max: DUPLICATE_POOL_SIZE - 1 })] = m
  }
  const invalid = Math.round(options.count * options.invalidRatio)
  const duplicates = Math.min(options.count - invalid, Math.round(options.count * options.duplicateRatio))
  // 0 = new order, 1 = invalid, 2 = duplicate
  const plan = new Uint8Array(options.count)
  plan.fill(1, 0, invalid)
  plan.fill(2, invalid, invalid + duplicates)
  for (let i = plan.length - 1; i > 0; i--) {
    const j = f.number.int({ min: 0, max: i })
    const t = plan[i]!
    plan[i] = plan[j]!
    plan[j] = t
  }
  let invalidSoFar = 0
  for (const slot of plan) {
    if (slot === 2 && pool.length > 0) {
      const original = pool[f.number.int({ min: 0, max: pool.length - 1 })]!
      yield { key: original.key, value: original.value, kind: "duplicate" }
      continue
    }
    const order = generateOrder(f)
    if (slot === 1) {
      const kind = DecodeRejectionKinds[invalidSoFar++ % DecodeRejectionKinds.length]!
      const value = toBuffer(
        makeInvalid(order, kind, f.number.int({ min: 0, max: 1_000_000 }), options.maxMessageBytes)
      )
      // The padded order's id is known; no need to parse a megabyte to find it.
      yield { key: kind === "too_large" ? order.order_uid : keyOf(value), value, kind }
    } else {
      // A duplicate slot before any order was sent becomes a new order.
      const message: Outgoing = {
        key: order.order_uid,
        value: Buffer.from(JSON.stringify(order)),
        kind: "valid",
        ids: { orderUid: order.order_uid, trackNumber: order.track_number }
      }
      remember(message)
      yield message
    }
  }
}

// kafkajs puts one send's messages for a partition in one record batch, which the broker refuses
// above the topic's max.message.bytes (1 MiB by default): keep sends well below that.
const MAX_SEND_BYTES = 768 * 1024

interface Batch {
  readonly messages: ReadonlyArray<Outgoing>
  /** A single message too big to share a send; the broker may refuse it on its own. */
  readonly oversized: boolean
}

/** Messages between two turns of the event loop while a batch is being generated. */
const TURN_EVERY = 64

/**
 * Groups messages into sends. Also yields `"turn"` every few messages: generating is CPU work
 * on the same thread as kafkajs, and the send in flight only progresses when we let it.
 */
function* batches(source: Iterable<Outgoing>, batchSize: number): Generator<Batch | "turn"> {
  let current: Array<Outgoing> = []
  let bytes = 0
  let pulled = 0
  for (const message of source) {
    if (++pulled % TURN_EVERY === 0) yield "turn"
    const size = message.value.byteLength + (message.key?.length ?? 0)
    if (size > MAX_SEND_BYTES / 2) {
      if (current.length > 0) yield { messages: current, oversized: false }
      current = []
      bytes = 0
      yield { messages: [message], oversized: true }
      continue
    }
    if (current.length > 0 && bytes + size > MAX_SEND_BYTES) {
      yield { messages: current, oversized: false }
      current = []
      bytes = 0
    }
    current.push(message)
    bytes += size
    if (current.length >= batchSize) {
      yield { messages: current, oversized: false }
      current = []
      bytes = 0
    }
  }
  if (current.length > 0) yield { messages: current, oversized: false }
}

interface Summary {
  sent: number
  valid: number
  duplicates: number
  invalid: Record<OrderRejected["kind"], number>
  /** too_large messages the broker refused because they exceed the topic's limit. */
  refusedByBroker: number
  /** The first few valid orders acknowledged, to try on the page. */
  examples: Array<SentIds>
  startedAt: number
  elapsedMs: number
}

const newSummary = (): Summary => ({
  sent: 0,
  valid: 0,
  duplicates: 0,
  invalid: { invalid_json: 0, schema: 0, business_rule: 0, too_large: 0, unprocessable: 0 },
  refusedByBroker: 0,
  examples: [],
  startedAt: performance.now(),
  elapsedMs: 0
})

/** How many sent orders the summary names. */
const EXAMPLES = 3

const count = (summary: Summary, message: Outgoing, span: Tracer.Span | undefined) => {
  summary.sent++
  if (message.ids !== undefined && summary.examples.length < EXAMPLES)
    summary.examples.push(span === undefined ? message.ids : { ...message.ids, traceId: span.traceId })
  if (message.kind === "valid") summary.valid++
  else if (message.kind === "duplicate") {
    summary.valid++
    summary.duplicates++
  } else summary.invalid[message.kind]++
}

const formatSummary = (s: Summary, topic: string, seed: number): string => {
  const seconds = s.elapsedMs / 1000
  const rate = seconds > 0 ? Math.round(s.sent / seconds) : s.sent
  // `unprocessable` (the decoder itself failed) is listed only when it happened.
  const kinds = [
    ...DecodeRejectionKinds,
    ...(s.invalid.unprocessable > 0 ? (["unprocessable"] as const) : [])
  ]
  const invalid = kinds.reduce((n, k) => n + s.invalid[k], 0)
  const lines = [
    `sent       ${s.sent} messages to ${topic} in ${seconds.toFixed(2)} s (${rate} msgs/s, seed ${seed})`,
    `valid      ${s.valid}, of which ${s.duplicates} duplicates`,
    `invalid    ${invalid}: ${kinds.map((k) => `${k} ${s.invalid[k]}`).join(", ")}`
  ]
  if (s.examples.length > 0) {
    // Aligned in columns: each order's id beside its track number.
    const width = Math.max(...s.examples.map((e) => e.orderUid.length))
    lines.push(
      `try        these on the page (an order id, or its track number):`,
      ...s.examples.map(
        (e) =>
          `             ${e.orderUid.padEnd(width)}  ${e.trackNumber}${e.traceId === undefined ? "" : `  trace ${e.traceId}`}`
      )
    )
  }
  if (s.refusedByBroker > 0) {
    lines.push(
      `refused    ${s.refusedByBroker} too_large messages by the broker: they exceed the topic's max.message.bytes, so the service never sees them`
    )
  }
  return lines.join("\n")
}

const acquireProducer = (brokers: Brokers) =>
  Effect.acquireRelease(
    Effect.tryPromise({
      try: async () => {
        const kafka = new Kafka({
          clientId: "order-producer",
          brokers: [...brokers.list],
          // Errors reach the user as one line from us; kafkajs's own log would repeat them as JSON.
          logLevel: logLevel.NOTHING,
          connectionTimeout: 3000,
          retry: { retries: 3, initialRetryTime: 300 }
        })
        const producer = kafka.producer({
          createPartitioner: Partitioners.DefaultPartitioner,
          idempotent: false,
          // Patient with sends (a leader may move during a long run), quick to give up connecting.
          retry: { retries: 5, initialRetryTime: 300 }
        })
        await producer.connect()
        return producer
      },
      catch: (e) =>
        new KafkaError({
          message: `cannot connect to Kafka at ${brokers.list.join(",")} (from ${brokers.source}): ${describeKafkaError(e)}${
            brokers.fromFile === true ? " — is the service running (`npm start`)?" : ""
          }`
        })
    }),
    (producer) => Effect.promise(() => producer.disconnect().catch(() => undefined))
  )

/**
 * While traces are exported: a producer span per message, each the root of a trace, from now until
 * `end` is given the send's outcome; the headers that carry each span's context.
 */
const traceSends = (topic: string, messages: ReadonlyArray<Outgoing>) =>
  Effect.gen(function* () {
    const propagation = yield* Tracing.TracePropagation
    if (propagation === undefined) return undefined
    const tracer = yield* Effect.tracer
    const start = yield* Clock.currentTimeNanos
    const spans = messages.map((m) =>
      Tracing.startSpan(tracer, `send ${topic}`, {
        start,
        kind: "producer",
        attributes: {
          "messaging.system": "kafka",
          "messaging.operation.type": "send",
          "messaging.destination.name": topic,
          ...(m.key === null ? {} : { "messaging.kafka.message.key": m.key })
        }
      })
    )
    return {
      spans,
      headers: spans.map((span) => propagation.inject(span)),
      end: (exit: Exit.Exit<unknown, unknown>) =>
        Effect.map(Clock.currentTimeNanos, (now) => {
          for (const span of spans) span.end(now, exit)
        })
    }
  })

const send = (producer: Producer, topic: string, batch: Batch, summary: Summary) =>
  Effect.flatMap(traceSends(topic, batch.messages), (trace) =>
    Effect.tryPromise({
      try: () =>
        producer.send({
          topic,
          acks: -1,
          compression: CompressionTypes.None,
          messages: batch.messages.map((m, i): Message => ({
            key: m.key,
            value: m.value,
            ...(trace === undefined ? {} : { headers: trace.headers[i]! })
          }))
        }),
      catch: (e) => e
    }).pipe(
      Effect.onExit((exit) =>
        trace === undefined
          ? Effect.void
          : trace.end(Exit.isSuccess(exit) ? exit : Exit.fail(describeKafkaError(Cause.squash(exit.cause))))
      ),
      Effect.map(() => trace?.spans)
    )
  ).pipe(
    Effect.match({
      onSuccess: (spans) => {
        batch.messages.forEach((m, i) => count(summary, m, spans?.[i]))
        return true
      },
      onFailure: (e) => {
        if (batch.oversized && hasErrorType(e, "MESSAGE_TOO_LARGE")) {
          summary.refusedByBroker++
          return true
        }
        return e
      }
    }),
    Effect.flatMap((r) =>
      r === true
        ? Effect.void
        : Effect.fail(
            new KafkaError({
              message: hasErrorType(r, "UNKNOWN_TOPIC_OR_PARTITION")
                ? `topic ${topic} does not exist: start the service once (it creates its topics) or create it`
                : `sending to ${topic} failed: ${describeKafkaError(r)}`
            })
          )
    )
  )

const progressBar = (total: number) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      // A bar only helps a person watching a long run; in logs and pipes it is noise.
      if (!process.stdout.isTTY || total <= 1000) return undefined
      const bar = new SingleBar({
        format: "{bar} {percentage}% | {value}/{total} messages | ETA {eta_formatted}",
        stream: process.stdout,
        hideCursor: true,
        clearOnComplete: true
      })
      bar.start(total, 0)
      return bar
    }),
    (bar) => Effect.sync(() => bar?.stop())
  )

const eventLoopTurn = Effect.async<void>((resume) => {
  setImmediate(() => resume(Effect.void))
})

/** Sends everything the options ask for, counting what was acknowledged into `summary`. */
const produce = (options: Options, summary: Summary): Effect.Effect<void, ProduceError> =>
  Effect.gen(function* () {
    const brokers = yield* resolveBrokers(options.brokers)
    const fromFiles = yield* readMessageFiles(options.files, options.maxMessageBytes)
    const producer = yield* acquireProducer(brokers)
    const bar = yield* progressBar(fromFiles.length + options.count)

    const pool = fromFiles.filter((m) => m.kind === "valid").slice(0, DUPLICATE_POOL_SIZE)
    function* all(): Generator<Outgoing> {
      yield* fromFiles
      yield* generated(options, pool)
    }
    // With a rate, small sends spread the messages evenly instead of in bursts.
    const batchSize =
      options.rate > 0
        ? Math.min(options.batchSize, Math.max(1, Math.floor(options.rate / 20)))
        : options.batchSize

    summary.startedAt = performance.now()
    let queued = 0
    let inFlight: Fiber.RuntimeFiber<void, KafkaError> | undefined
    // One send in flight while the next batch is generated.
    for (const batch of batches(all(), batchSize)) {
      if (batch === "turn") {
        yield* eventLoopTurn
        continue
      }
      if (options.rate > 0) {
        const due = summary.startedAt + (queued / options.rate) * 1000
        const wait = due - performance.now()
        if (wait > 0) yield* Effect.sleep(wait)
      }
      if (inFlight !== undefined) yield* Fiber.join(inFlight)
      bar?.update(summary.sent + summary.refusedByBroker)
      inFlight = yield* Effect.fork(send(producer, options.topic, batch, summary))
      queued += batch.messages.length
    }
    if (inFlight !== undefined) yield* Fiber.join(inFlight)
    bar?.update(summary.sent + summary.refusedByBroker)
  }).pipe(
    Effect.ensuring(Effect.sync(() => (summary.elapsedMs = performance.now() - summary.startedAt))),
    Effect.scoped
  )

const main = Effect.gen(function* () {
  const options = yield* parseOptions(process.argv.slice(2))
  if (options.help) return yield* Console.log(USAGE)
  const summary = newSummary()
  yield* produce(options, summary).pipe(
    // Ctrl-C still tells what was acknowledged until then.
    Effect.onInterrupt(() =>
      Console.log(`${formatSummary(summary, options.topic, options.seed)}\n(interrupted)`)
    )
  )
  yield* Console.log(formatSummary(summary, options.topic, options.seed))
})

/** Set when an expected error was reported, so the process exits with a failure status. */
let failureStatus = 0

const exitCode = (exit: Exit.Exit<unknown, unknown>): number => {
  if (Exit.isSuccess(exit)) return failureStatus
  return Cause.isInterruptedOnly(exit.cause) ? 130 : 1
}

// Only when run as a program, so the module can be imported without sending anything.
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  NodeRuntime.runMain(
    main.pipe(
      // Traces, when the environment names an endpoint: sent before the process exits.
      Effect.provide(Tracing.layerFromEnv("order-producer")),
      // Expected errors are one line for a person; defects still reach runMain with their stack.
      Effect.catchAll((e) =>
        Effect.zipRight(
          Console.error(
            e._tag === "UsageError" ? `produce: ${e.message}\nSee --help.` : `produce: ${e.message}`
          ),
          Effect.sync(() => {
            failureStatus = e._tag === "UsageError" ? 2 : 1
          })
        )
      )
    ),
    { teardown: (exit, onExit) => onExit(exitCode(exit)) }
  )
}
