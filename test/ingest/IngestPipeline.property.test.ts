/**
 * The real ingest pipeline on in-memory Kafka, dead-letter and database fakes, fed thousands of
 * generated hostile messages between valid orders, while the fakes fail, lose the replies of
 * commits that went through, and hand batches to two consumers at once: every message must end
 * exactly once, stored or parked with the one kind the README gives it; the totals must add up
 * (stored + parked = distinct messages sent); no offset may be committed past a message that is
 * neither; and whatever comes, the pipeline must still be consuming at the end.
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

/** What must become of a message: stored, or parked with its kind. */
type Expect =
  | { readonly to: "stored" }
  /** More than one kind only where the README's rules leave a choice (text that is not JSON). */
  | { readonly to: "parked"; readonly kinds: ReadonlyArray<RejectionKind> }

interface Case extends Incoming {
  readonly expect: Expect
  readonly what: string
  /** The same message sent again on purpose: it ends as its original did, and counts once. */
  readonly redelivery?: boolean
}

const stored: Expect = { to: "stored" }
const parkedAs = (...kinds: ReadonlyArray<RejectionKind>): Expect => ({ to: "parked", kinds })

const HOLE = "\u0001hostile\u0001"
/** The order's JSON with the value at `path` replaced by raw JSON text (which may be huge or deep). */
const withRaw = (order: OrderJson, path: ReadonlyArray<string | number>, raw: string): string => {
  const copy = structuredClone(order) as unknown as Record<string | number, unknown>
  let target = copy
  for (const step of path.slice(0, -1)) target = target[step] as Record<string | number, unknown>
  target[path[path.length - 1]!] = HOLE
  return JSON.stringify(copy).replace(JSON.stringify(HOLE), () => raw)
}

type Path = ReadonlyArray<string | number>
const FIELDS: ReadonlyArray<Path> = [
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
const at = (path: Path, ...candidates: ReadonlyArray<Path>) =>
  candidates.some((c) => c.join(".") === path.join("."))

const nested = (depth: number, kind: "array" | "object") =>
  kind === "array"
    ? "[".repeat(depth) + "1" + "]".repeat(depth)
    : '{"a":'.repeat(depth) + "1" + "}".repeat(depth)

/** A message; whatever is bigger than `ingest.max_message_bytes` is `too_large`, unread. */
const keyed = (order: OrderJson, value: string | Buffer | null, expect: Expect, what: string): Case => {
  const bytes = typeof value === "string" ? Buffer.from(value) : value
  return {
    key: order.order_uid,
    value: bytes,
    expect: bytes !== null && bytes.byteLength > MAX_MESSAGE_BYTES ? parkedAs("too_large") : expect,
    what
  }
}

/**
 * Odd characters as a whole string field's value. NUL is refused by the model (PostgreSQL text
 * cannot hold it); a lone surrogate passes the model and PostgreSQL refuses it as data (22P02):
 * `schema` with the database's reason either way. Bidirectional marks and a BOM are text like any
 * other. Each value is made unique per order, so that a changed `order_uid` is shared by no other.
 */
const ODD_CHARACTERS = {
  "a lone high surrogate": { raw: "\\ud800", refusedBy: "PostgreSQL" },
  "a lone low surrogate": { raw: "a\\udfffb", refusedBy: "PostgreSQL" },
  NUL: { raw: "\\u0000", refusedBy: "the model" },
  "a right-to-left override": { raw: "\\u202e", refusedBy: "nobody" },
  "a byte order mark": { raw: "\\ufeff", refusedBy: "nobody" }
} as const
const oddCharacter = (order: OrderJson, path: Path, name: keyof typeof ODD_CHARACTERS): Case => {
  const { raw, refusedBy } = ODD_CHARACTERS[name]
  const expect =
    // Not a string field, or one with a format (e-mail, currency, date).
    !at(path, ["order_uid"], ["track_number"], ["delivery", "name"], ["items", 0, "name"]) ||
    refusedBy === "the model"
      ? parkedAs("schema")
      : at(path, ["track_number"])
        ? parkedAs("business_rule") // decoded, but the items' track number no longer agrees
        : refusedBy === "PostgreSQL"
          ? parkedAs("schema")
          : stored
  return keyed(
    order,
    withRaw(order, path, `"${raw}-${order.order_uid}"`),
    expect,
    `${name} at ${path.join(".")}`
  )
}

/**
 * Numbers at and beyond the edges of an integer field. Integers are exact up to 2^53 − 1: 2^53 and
 * beyond, 1e400 (Infinity to JSON.parse), fractions and null are `schema`; -0 and 1e-400 are 0.
 */
const NUMBER_FIELDS: ReadonlyArray<Path> = [
  ["payment", "amount"],
  ["payment", "payment_dt"],
  ["items", 0, "chrt_id"],
  ["sm_id"]
]
const edgeNumber = (order: OrderJson, path: Path, raw: string): Case => {
  const isAmount = at(path, ["payment", "amount"])
  const { goods_total, delivery_cost, custom_fee } = order.payment
  const expect = ((): Expect => {
    switch (raw) {
      case "9007199254740991":
        return isAmount ? parkedAs("business_rule") : stored
      case "-1":
        // sm_id is any integer; the others are counts and money.
        return at(path, ["sm_id"]) ? stored : parkedAs("schema")
      case "-0":
      case "1e-400":
        return isAmount && goods_total + delivery_cost + custom_fee !== 0 ? parkedAs("business_rule") : stored
      default: // 2^53, ±1e400, 0.5, null
        return parkedAs("schema")
    }
  })()
  return keyed(order, withRaw(order, path, raw), expect, `${raw} at ${path.join(".")}`)
}

const utf8 = new TextDecoder("utf-8", { fatal: true })
/** Bytes from nowhere: not UTF-8 is `invalid_json`; JSON is `schema` (no order is 300 random bytes). */
const randomBytes = (order: OrderJson, bytes: Uint8Array): Case => {
  const expect = ((): Expect => {
    let text: string
    try {
      text = utf8.decode(bytes)
    } catch {
      return parkedAs("invalid_json")
    }
    try {
      JSON.parse(text)
      return parkedAs("schema")
    } catch {
      // Text that is not JSON, unless it nests or lists beyond any order's shape first.
      return parkedAs("invalid_json", "schema")
    }
  })()
  return keyed(order, Buffer.from(bytes), expect, "arbitrary bytes")
}

/** A valid order padded with a field the model does not know, to just past the size limit. */
const tooLarge = (order: OrderJson, extra: number): Case => {
  const base = Buffer.byteLength(JSON.stringify({ ...order, padding: "" }))
  const padding = "p".repeat(MAX_MESSAGE_BYTES - base + extra)
  return keyed(
    order,
    JSON.stringify({ ...order, padding }),
    parkedAs("too_large"),
    `${extra} bytes too large`
  )
}

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
    // Huge arrays, strings and objects; and just too many bytes.
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
    // Longer than any field may be (512 at most), shorter than the bounds before parsing.
    fc
      .tuple(field, fc.integer({ min: 513, max: 2_000 }))
      .map(([path, n]) =>
        keyed(
          order,
          withRaw(order, path, JSON.stringify("y".repeat(n))),
          parkedAs("schema"),
          `${n} characters`
        )
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
    fc.integer({ min: 1, max: 4_096 }).map((extra) => tooLarge(order, extra)),
    // Odd Unicode and bytes.
    fc
      .tuple(field, fc.constantFrom(...(Object.keys(ODD_CHARACTERS) as Array<keyof typeof ODD_CHARACTERS>)))
      .map(([path, name]) => oddCharacter(order, path, name)),
    fc
      .constantFrom(Buffer.from([0xff, 0xfe, 0x7b]), Buffer.from([0xed, 0xa0, 0x80]), Buffer.alloc(0))
      .map((bytes) => keyed(order, bytes, parkedAs("invalid_json"), "bytes that are not UTF-8 JSON")),
    fc.uint8Array({ maxLength: 300 }).map((bytes) => randomBytes(order, bytes)),
    fc.constant(keyed(order, null, parkedAs("invalid_json"), "a tombstone (no value)")),
    // Numbers at and beyond the edges, null and missing values.
    fc
      .tuple(
        fc.constantFrom(...NUMBER_FIELDS),
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
      .map(([path, raw]) => edgeNumber(order, path, raw)),
    field.map((path) =>
      keyed(order, withRaw(order, path, "null"), parkedAs("schema"), `null at ${path.join(".")}`)
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
        // Under the original's key: the same partition, after it.
        out.push(
          conflict
            ? {
                ...keyed(
                  order,
                  JSON.stringify({ ...order, customer_id: `${order.customer_id}-changed` }),
                  parkedAs("conflict"),
                  "a conflict"
                ),
                key: original.key
              }
            : { ...original, what: "a redelivery", redelivery: true }
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
  expect.to === "stored" ? end === "stored" : (expect.kinds as ReadonlyArray<string>).includes(end)

describe("the ingest pipeline on in-memory fakes", () => {
  it.live(
    "every hostile message ends exactly once, stored or parked with its kind; offsets never pass an unsettled one; ingestion goes on",
    () =>
      Effect.gen(function* () {
        let messages = 0
        const met: Ledger["faults"] = {
          lostCommitReply: 0,
          lostTransactionReply: 0,
          lostStoreReply: 0,
          racing: 0
        }
        const result = yield* Effect.promise(() =>
          fc.check(
            fc.asyncProperty(run, fc.integer({ min: 1, max: 2 ** 31 - 1 }), async (cases, seed) => {
              messages += cases.length
              const ledger = makeLedger(PARTITIONS)
              const faults = {
                kafka: seededChance(seed, 0.05),
                db: seededChance(seed + 1, 0.05),
                stale: seededChance(seed + 2, 0.03),
                dropped: seededChance(seed + 3, 0.03),
                racing: seededChance(seed + 4, 0.05),
                kafkaReplyLost: seededChance(seed + 5, 0.05),
                dbReplyLost: seededChance(seed + 6, 0.05)
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
                      racing: faults.racing,
                      transientFailure: faults.kafka,
                      lostReply: faults.kafkaReplyLost,
                      parse
                    },
                    { transientFailure: faults.db, lostReply: faults.dbReplyLost }
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
              // The totals: nothing stored or parked that no message accounts for, nothing twice.
              const storedUids = new Set(
                where
                  .filter(({ c }) => c.expect.to === "stored")
                  .map(({ c }) => (JSON.parse(c.value!.toString()) as OrderJson).order_uid)
              )
              const toPark = where.filter(({ c }) => c.expect.to === "parked").length
              const distinct = cases.filter((c) => !c.redelivery).length
              expect(ledger.parked.length, "letters: one per message to park").toBe(toPark)
              expect(ledger.stored.size, "orders stored: one per distinct valid order").toBe(
                storedUids.size + 1
              )
              expect(ledger.stored.size - 1 + ledger.parked.length, "stored + parked").toBe(distinct)
              for (const [name, n] of Object.entries(ledger.faults)) met[name as keyof typeof met] += n
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
        // The runs met every double they were meant to: replies lost after a commit, racing consumers.
        expect(
          Object.values(met).every((n) => n > 0),
          JSON.stringify(met)
        ).toBe(true)
      }),
    300_000
  )

  it.live("a pipeline that dies with a batch in flight gives the batch back and lets the process close", () =>
    Effect.gen(function* () {
      const ledger = makeLedger(1)
      const crash = yield* Deferred.make<never, KafkaError>()
      const order = fc.sample(arbitraryOrder, { seed: 7, numRuns: 1 })[0]!
      // PostgreSQL is away for good: the batch is being retried in place when Kafka gives up.
      let storeAttempts = 0
      const app = pipeline(
        ledger,
        { batchSize: 10, stale: never, transientFailure: never, parse, crash },
        { transientFailure: () => ++storeAttempts > 0 }
      )
      append(ledger, 0, [{ key: order.order_uid, value: Buffer.from(JSON.stringify(order)) }])
      const running = yield* Effect.fork(launch(app))
      yield* until(
        "storing the batch has failed and been tried again",
        () => storeAttempts >= 2,
        () => ({ storeAttempts })
      )
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
