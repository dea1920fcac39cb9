/**
 * The real ingest pipeline on in-memory Kafka, dead-letter and database fakes, fed thousands of
 * generated hostile messages between valid orders: every message must end exactly once, stored or
 * parked with a kind; no offset may be committed past a message that is neither; and whatever
 * comes, the pipeline must still be consuming at the end.
 */
import { describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Deferred, Effect, Either, Exit, Layer, Logger, LogLevel, Option } from "effect"
import * as fc from "fast-check"
import type { KafkaMessage } from "kafkajs"
import { launch } from "../../src/App.ts"
import { OrderCache } from "../../src/cache/OrderCache.ts"
import * as IngestPipeline from "../../src/ingest/IngestPipeline.ts"
import { IngestStatus, IngestStopped } from "../../src/ingest/IngestStatus.ts"
import { KafkaError } from "../../src/kafka/KafkaError.ts"
import type { OrderJson } from "../../src/orders/Order.ts"
import { decodeOrderBytes } from "../../src/orders/OrderDecoder.ts"
import type { RejectionKind } from "../../src/orders/Rejection.ts"
import { arbitraryOrder } from "../support/arbitraries.ts"
import {
  append,
  DIES_IN_STORE,
  fakeKafka,
  fakeRepository,
  lettersOf,
  makeLedger,
  never,
  REFUSED_BY_DATABASE,
  seededChance,
  type FakeKafkaOptions,
  type FakeRepositoryOptions,
  type Incoming,
  type Ledger
} from "../support/fakes.ts"

const MAX_MESSAGE_BYTES = 1024 * 1024
const PARTITIONS = 3

/** What must become of a message. */
type Expect =
  | { readonly to: "stored" }
  | { readonly to: "parked"; readonly kinds: ReadonlyArray<RejectionKind> }
  /** Either way, as long as it ends exactly once (odd input the model may or may not accept). */
  | { readonly to: "either" }

interface Case extends Incoming {
  readonly expect: Expect
  readonly what: string
}

const stored: Expect = { to: "stored" }
const parkedAs = (...kinds: ReadonlyArray<RejectionKind>): Expect => ({ to: "parked", kinds })
const either: Expect = { to: "either" }

const HOLE = "\u0001hostile\u0001"
/** The order's JSON with the value at `path` replaced by raw JSON text (which may be huge or deep). */
const withRaw = (order: OrderJson, path: ReadonlyArray<string | number>, raw: string): string => {
  const copy = structuredClone(order) as unknown as Record<string | number, unknown>
  let target = copy
  for (const step of path.slice(0, -1)) target = target[step] as Record<string | number, unknown>
  target[path[path.length - 1]!] = HOLE
  return JSON.stringify(copy).replace(JSON.stringify(HOLE), () => raw)
}

const FIELDS: ReadonlyArray<ReadonlyArray<string | number>> = [
  ["order_uid"],
  ["track_number"],
  ["delivery"],
  ["delivery", "name"],
  ["delivery", "email"],
  ["payment"],
  ["payment", "amount"],
  ["payment", "currency"],
  ["items"],
  ["items", 0],
  ["items", 0, "price"],
  ["items", 0, "name"],
  ["date_created"],
  ["sm_id"]
]
const field = fc.constantFrom(...FIELDS)

const nested = (depth: number, kind: "array" | "object") =>
  kind === "array"
    ? "[".repeat(depth) + "1" + "]".repeat(depth)
    : '{"a":'.repeat(depth) + "1" + "}".repeat(depth)

const keyed = (order: OrderJson, value: string | Buffer | null, expect: Expect, what: string): Case => ({
  key: order.order_uid,
  value: typeof value === "string" ? Buffer.from(value) : value,
  expect,
  what
})

/** Valid orders and ways to break them, each with what must become of it. */
const hostile = (order: OrderJson): fc.Arbitrary<Case> =>
  fc.oneof(
    // Valid, and valid with things a producer may add.
    fc.constant(keyed(order, JSON.stringify(order), stored, "a valid order")),
    fc.constant({ ...keyed(order, JSON.stringify(order), stored, "a valid order without a key"), key: null }),
    fc.constant(
      keyed(
        order,
        `{"__proto__":{"polluted":true},"constructor":{"prototype":{}},${JSON.stringify(order).slice(1)}`,
        stored,
        "__proto__ and constructor keys"
      )
    ),
    fc.constant(
      keyed(
        order,
        JSON.stringify({
          ...order,
          delivery: { ...order.delivery, name: `\u202e${order.delivery.name}\u200f` }
        }),
        stored,
        "right-to-left marks"
      )
    ),
    // Deep nesting, in every field and as the whole value.
    fc
      .tuple(
        field,
        fc.constantFrom(11, 64, 5_000, 50_000),
        fc.constantFrom("array", "object") as fc.Arbitrary<"array" | "object">
      )
      .map(([path, depth, kind]) =>
        keyed(
          order,
          withRaw(order, path, nested(depth, kind)),
          parkedAs("schema"),
          `${depth} levels deep at ${path.join(".")}`
        )
      ),
    fc
      .constantFrom(11, 50_000)
      .map((depth) =>
        keyed(order, nested(depth, "array"), parkedAs("schema"), `an array ${depth} levels deep`)
      ),
    // Huge arrays, strings and objects.
    fc
      .integer({ min: 1_001, max: 3_000 })
      .map((n) =>
        keyed(
          order,
          JSON.stringify({ ...order, items: Array.from({ length: n }, () => order.items[0]) }),
          parkedAs("schema"),
          `${n} items`
        )
      ),
    fc
      .tuple(field, fc.integer({ min: 16_385, max: 40_000 }))
      .map(([path, n]) =>
        keyed(
          order,
          withRaw(order, path, JSON.stringify("x".repeat(n))),
          parkedAs("schema"),
          `a ${n}-character string`
        )
      ),
    fc
      .tuple(field, fc.integer({ min: 513, max: 2_000 }))
      .map(([path, n]) =>
        keyed(order, withRaw(order, path, JSON.stringify("y".repeat(n))), either, `${n} characters`)
      ),
    fc
      .tuple(fc.constantFrom(["delivery"], ["payment"], ["items", 0]), fc.integer({ min: 257, max: 5_000 }))
      .map(([path, n]) => {
        const extra = Object.fromEntries(Array.from({ length: n }, (_, i) => [`unknown_${i}`, i]))
        return keyed(order, withRaw(order, path, JSON.stringify(extra)), parkedAs("schema"), `${n} keys`)
      }),
    fc
      .integer({ min: 1_001, max: 5_000 })
      .map((n) =>
        keyed(
          order,
          JSON.stringify({ ...order, unknown: Array.from({ length: n }, (_, i) => i) }),
          parkedAs("schema"),
          `an array of ${n}`
        )
      ),
    // Odd Unicode and bytes.
    fc
      .constantFrom('"\\ud800"', '"a\\udfffb"', '"\\u0000"', '"\\u202e"', '"\\ufeff"')
      .chain((raw) =>
        field.map((path) => keyed(order, withRaw(order, path, raw), either, `${raw} at ${path.join(".")}`))
      ),
    fc
      .constantFrom(Buffer.from([0xff, 0xfe, 0x7b]), Buffer.from([0xed, 0xa0, 0x80]), Buffer.alloc(0))
      .map((bytes) => keyed(order, bytes, parkedAs("invalid_json"), "bytes that are not UTF-8 JSON")),
    fc
      .uint8Array({ maxLength: 300 })
      .map((bytes) => keyed(order, Buffer.from(bytes), either, "arbitrary bytes")),
    fc.constant(keyed(order, null, parkedAs("invalid_json"), "a tombstone (no value)")),
    // Numbers at and beyond the edges, null and missing values.
    fc
      .tuple(
        fc.constantFrom(["payment", "amount"], ["payment", "payment_dt"], ["items", 0, "chrt_id"], ["sm_id"]),
        fc.constantFrom(
          "9007199254740991",
          "9007199254740992",
          "1e400",
          "-1e400",
          "-1",
          "0.5",
          "-0",
          "1e-400",
          "null"
        )
      )
      .map(([path, raw]) => keyed(order, withRaw(order, path, raw), either, `${raw} at ${path.join(".")}`)),
    field.map((path) =>
      keyed(
        order,
        withRaw(order, path, "null"),
        parkedAs("schema", "business_rule"),
        `null at ${path.join(".")}`
      )
    ),
    // Faults of the database on this order alone: a refusal, and a defect while storing it.
    fc.constant(
      keyed(
        order,
        JSON.stringify({ ...order, customer_id: REFUSED_BY_DATABASE }),
        parkedAs("schema"),
        "an order the database refuses"
      )
    ),
    fc.constant(
      keyed(
        order,
        JSON.stringify({ ...order, customer_id: DIES_IN_STORE }),
        parkedAs("unprocessable"),
        "an order storing dies on"
      )
    )
  )

/** A run: hostile messages, with duplicates and conflicts of the valid ones interleaved. */
const run = fc
  .array(arbitraryOrder, { minLength: 250, maxLength: 300 })
  // Generated orders repeat (fast-check favours small values): each gets a uid of its own, so
  // that only the duplicates and conflicts made on purpose share one.
  .chain((orders) =>
    fc.tuple(...orders.map((order, i) => hostile({ ...order, order_uid: `${i}-${order.order_uid}` })))
  )
  .chain((cases) =>
    fc.array(fc.tuple(fc.nat({ max: cases.length - 1 }), fc.boolean()), { maxLength: 30 }).map((repeats) => {
      const out = [...cases]
      for (const [i, conflict] of repeats) {
        const original = cases[i]!
        if (original.expect.to !== "stored" || original.key === null) continue
        const order = JSON.parse(original.value!.toString()) as OrderJson
        out.push(
          conflict
            ? keyed(
                order,
                JSON.stringify({ ...order, customer_id: `${order.customer_id}-changed` }),
                parkedAs("conflict"),
                "a conflict"
              )
            : keyed(order, original.value!, stored, "a redelivery")
        )
      }
      return out
    })
  )

const parse = (m: KafkaMessage) => Either.getRight(decodeOrderBytes(m.value, MAX_MESSAGE_BYTES))

/** Messages with the same key go to the same partition, in the order they were sent. */
const partitionOf = (key: string | null, i: number) => {
  if (key === null) return i % PARTITIONS
  let h = 0
  for (let j = 0; j < key.length; j++) h = (h * 31 + key.charCodeAt(j)) >>> 0
  return h % PARTITIONS
}

/** Thousands of parked messages would each log a line. */
const quiet = Logger.minimumLogLevel(LogLevel.None)

const config = Layer.setConfigProvider(
  ConfigProvider.fromJson({
    ingest: { retry_base: "1 millis", retry_max: "4 millis", max_message_bytes: MAX_MESSAGE_BYTES },
    cache: { max_entries: 1000, warm_count: 0 }
  })
)

/** The real pipeline on the fakes, quiet. */
const pipeline = (ledger: Ledger, kafka: FakeKafkaOptions, repository: FakeRepositoryOptions) =>
  IngestPipeline.run.pipe(
    Layer.provideMerge(IngestStatus.Default),
    Layer.provide(fakeKafka(ledger, kafka)),
    Layer.provide(fakeRepository(ledger, repository)),
    Layer.provide(OrderCache.Default),
    Layer.provide(config),
    Layer.provide(quiet)
  )

const allCommitted = (ledger: Ledger) =>
  ledger.partitions.every((messages, p) => ledger.committed[p] === messages.length)

const until = (what: string, check: () => boolean, state: () => unknown, timeoutMs = 20_000) =>
  Effect.gen(function* () {
    const deadline = Date.now() + timeoutMs
    while (!check()) {
      if (Date.now() > deadline) {
        return yield* Effect.die(new Error(`timed out waiting until ${what}: ${JSON.stringify(state())}`))
      }
      yield* Effect.sleep("2 millis")
    }
  })

/** How each message ended: its one letter's kind, "stored", or a description of what went wrong. */
const endOf = (ledger: Ledger, partition: number, offset: number): string => {
  const letters = lettersOf(ledger, partition, offset)
  if (letters.length > 1) return `parked ${letters.length} times`
  if (letters.length === 1) return letters[0]!.kind
  const order = parse(ledger.partitions[partition]![offset]!)
  if (Option.isSome(order) && ledger.stored.get(order.value.order_uid) !== undefined) {
    return ledger.stored.get(order.value.order_uid) === JSON.stringify(order.value)
      ? "stored"
      : "stored as something else"
  }
  return "neither stored nor parked"
}

const acceptable = (expect: Expect, end: string) =>
  expect.to === "stored"
    ? end === "stored"
    : expect.to === "parked"
      ? (expect.kinds as ReadonlyArray<string>).includes(end)
      : // Mutating order_uid may make several messages share one: conflicts are fair then.
        end === "stored" || ["invalid_json", "schema", "business_rule", "too_large", "conflict"].includes(end)

describe("the ingest pipeline on in-memory fakes", () => {
  it.live(
    "every hostile message ends exactly once, stored or parked with its kind; offsets never pass an unsettled one; ingestion goes on",
    () =>
      Effect.gen(function* () {
        let messages = 0
        const result = yield* Effect.promise(() =>
          fc.check(
            fc.asyncProperty(run, fc.integer({ min: 1, max: 2 ** 31 - 1 }), async (cases, seed) => {
              messages += cases.length
              const ledger = makeLedger(PARTITIONS)
              const faults = {
                kafka: seededChance(seed, 0.05),
                db: seededChance(seed + 1, 0.05),
                stale: seededChance(seed + 2, 0.03),
                dropped: seededChance(seed + 3, 0.03)
              }
              const progress = () => ({
                committed: ledger.committed,
                lengths: ledger.partitions.map((p) => p.length),
                parked: ledger.parked.length,
                stored: ledger.stored.size
              })
              const where: Array<{ readonly partition: number; readonly offset: number; readonly c: Case }> =
                []
              await Effect.gen(function* () {
                const byPartition: Array<Array<Case>> = Array.from({ length: PARTITIONS }, () => [])
                cases.forEach((c, i) => {
                  const p = partitionOf(c.key, i)
                  where.push({
                    partition: p,
                    offset: ledger.partitions[p]!.length + byPartition[p]!.length,
                    c
                  })
                  byPartition[p]!.push(c)
                })
                byPartition.forEach((cs, p) => append(ledger, p, cs))
                yield* until("every message is committed", () => allCommitted(ledger), progress)

                // Still consuming: one more valid order is stored.
                const last = fc.sample(arbitraryOrder, { seed, numRuns: 1 })[0]!
                const lastOrder = { ...last, order_uid: `${last.order_uid}-after-the-storm` }
                append(ledger, 0, [
                  { key: lastOrder.order_uid, value: Buffer.from(JSON.stringify(lastOrder)) }
                ])
                yield* until(
                  "the order sent last is stored",
                  () => ledger.stored.has(lastOrder.order_uid),
                  progress
                )
                expect(yield* Effect.flatMap(IngestStatus, (s) => s.running)).toBe(true)
              }).pipe(
                Effect.provide(
                  pipeline(
                    ledger,
                    {
                      batchSize: 25,
                      stale: faults.stale,
                      dropped: faults.dropped,
                      transientFailure: faults.kafka,
                      parse
                    },
                    { transientFailure: faults.db }
                  )
                ),
                Effect.scoped,
                Effect.runPromise
              )

              if (ledger.violations.length > 0)
                expect.fail(`broken promises:\n${ledger.violations.join("\n")}`)
              const wrong = where
                .map(({ partition, offset, c }) => ({
                  what: c.what,
                  expect: c.expect,
                  end: endOf(ledger, partition, offset)
                }))
                .filter(({ expect: e, end }) => !acceptable(e, end))
                .map(({ what, expect: e, end }) => `${what}: expected ${JSON.stringify(e)}, ended ${end}`)
              if (wrong.length > 0) expect.fail(`messages that ended wrongly:\n${wrong.join("\n")}`)
              // Nothing but the orders storing dies on was beyond the service: the bounds caught the rest.
              const unprocessable = ledger.parked.filter((l) => l.kind === "unprocessable")
              expect(unprocessable.every((l) => l.detail.includes("the fake database broke"))).toBe(true)
              expect(ledger.parked.every((l) => l.detail.length > 0 && l.detail.length <= 2000)).toBe(true)
            }),
            { numRuns: Number(process.env["PIPELINE_RUNS"] ?? 40), endOnFailure: true }
          )
        )
        // The counterexample holds megabytes of generated messages: report the error and the seed.
        if (result.failed) {
          const error =
            result.errorInstance instanceof Error
              ? result.errorInstance.message
              : String(result.errorInstance)
          expect.fail(`seed ${result.seed}, path ${result.counterexamplePath}: ${error.slice(0, 6000)}`)
        }
        expect(messages).toBeGreaterThanOrEqual(10_000)
      }),
    300_000
  )

  it.live("a pipeline that dies with a batch in flight gives the batch back and lets the process close", () =>
    Effect.gen(function* () {
      const ledger = makeLedger(1)
      const crash = yield* Deferred.make<never, KafkaError>()
      const order = fc.sample(arbitraryOrder, { seed: 7, numRuns: 1 })[0]!
      // PostgreSQL is away for good: the batch is being retried in place when Kafka gives up.
      const app = pipeline(
        ledger,
        { batchSize: 10, stale: never, transientFailure: never, parse, crash },
        { transientFailure: () => true }
      )
      append(ledger, 0, [{ key: order.order_uid, value: Buffer.from(JSON.stringify(order)) }])
      const running = yield* Effect.fork(launch(app))
      yield* Effect.sleep("200 millis")
      yield* Deferred.fail(crash, new KafkaError({ message: "The Kafka consumer crashed: gave up" }))
      const exit = yield* running.await.pipe(Effect.timeout("5 seconds"))
      expect(Exit.isFailure(exit)).toBe(true)
      if (Exit.isFailure(exit)) {
        const error = exit.cause._tag === "Fail" ? exit.cause.error : undefined
        expect(error).toBeInstanceOf(IngestStopped)
        expect((error as IngestStopped).message).toBe(
          "Ingestion stopped: The Kafka consumer crashed: gave up"
        )
      }
      // Nothing was committed or parked for the batch it held.
      expect(ledger.committed).toEqual([0])
      expect(ledger.parked).toEqual([])
    })
  )
})
