/**
 * Replay's parts: what a replayed message carries; reading a letter off the topic into the index;
 * and, on a real PostgreSQL with a fake broker, how a replay pages, claims and records letters.
 * See replay.test.ts for the real broker.
 */
import { randomBytes } from "node:crypto"
import { describe, expect, it, layer } from "@effect/vitest"
import { ConfigProvider, Duration, Effect, Layer, Option } from "effect"
import type { KafkaMessage } from "kafkajs"
import {
  DeadLetterIndex,
  letterFromMessage,
  parsePosition,
  type IndexedLetter,
  type Selection
} from "../../src/deadletters/DeadLetterIndex.ts"
import {
  DeadLetterReplay,
  replayMessage,
  type ReplayOptions,
  type ReplayResult
} from "../../src/deadletters/DeadLetterReplay.ts"
import { DeadLetterHeaders, ReplayHeaders, toKafkaMessage } from "../../src/kafka/DeadLetters.ts"
import { TestDatabase } from "../support/database.ts"

const parkedAt = new Date("2026-11-30T08:00:00.123Z")

/** A letter as the service writes it to the dead-letter topic, read back by kafkajs at `offset`. */
const parked = (offset: string, extraHeaders: Record<string, string> = {}): KafkaMessage => {
  const m = toKafkaMessage(
    {
      kind: "conflict",
      detail: "a different order is already stored",
      key: Buffer.from("b563feb7b2b84b6test"),
      value: Buffer.from(JSON.stringify({ order_uid: "b563feb7b2b84b6test", entry: "WBIL" })),
      headers: { "trace-id": Buffer.from("abc"), ...extraHeaders },
      source: { topic: "orders", partition: 2, offset: "17" }
    },
    parkedAt
  )
  return {
    key: m.key,
    value: m.value,
    offset,
    timestamp: String(parkedAt.getTime()),
    attributes: 0,
    headers: Object.fromEntries(
      Object.entries(m.headers).map(([k, v]) => [k, Buffer.isBuffer(v) ? v : Buffer.from(String(v))])
    )
  }
}

describe("a letter read from the dead-letter topic", () => {
  it("is indexed with its reason, where it came from, when it was parked and, for a conflict, the stored order's id", () => {
    const letter = letterFromMessage(1, parked("42"))
    expect(letter).toMatchObject({
      partition: 1,
      offset: "42",
      kind: "conflict",
      detail: "a different order is already stored",
      source: { topic: "orders", partition: 2, offset: "17" },
      orderUid: "b563feb7b2b84b6test",
      replayOf: null
    })
    expect(letter.failedAt.toISOString()).toBe(parkedAt.toISOString())
    expect(letter.headers.map((h) => h.name)).toContain(DeadLetterHeaders.kind)
  })

  it("parked again after a replay, it names the letter it was a copy of", () => {
    const letter = letterFromMessage(0, parked("43", { "replay.of": "orders.dlq/1/42" }))
    expect(letter.replayOf).toBe("orders.dlq/1/42")
    expect(parsePosition(letter.replayOf)).toEqual({ topic: "orders.dlq", partition: 1, offset: "42" })
  })

  it("a NUL in a header, which PostgreSQL text cannot hold, is kept as U+FFFD rather than stalling the index", () => {
    const message = parked("44")
    message.headers![DeadLetterHeaders.detail] = Buffer.from("bad\u0000byte")
    expect(letterFromMessage(0, message).detail).toBe("bad\uFFFDbyte")
  })
})

describe("a replayed message", () => {
  const stored = (headers: Record<string, string>) => ({
    partition: 1,
    offset: "42",
    kind: "schema",
    key: Buffer.from("order-1"),
    value: Buffer.from([0x7b, 0xff, 0x7d]),
    headers: Object.entries(headers).map(([name, value]) => ({ name, value: Buffer.from(value) }))
  })

  it("carries the original key, bytes and headers, with replay.of and replay.at instead of the parking headers", () => {
    const at = new Date("2026-11-30T09:00:00Z")
    const message = replayMessage(
      stored({
        "trace-id": "abc",
        [DeadLetterHeaders.kind]: "schema",
        [DeadLetterHeaders.detail]: "payment.amount: Expected number",
        [DeadLetterHeaders.topic]: "orders",
        [DeadLetterHeaders.partition]: "0",
        [DeadLetterHeaders.offset]: "7",
        [DeadLetterHeaders.failedAt]: "2026-11-30T08:00:00Z",
        // From an earlier replay: replaced, not repeated.
        "replay.of": "orders.dlq/0/3",
        "replay.at": "2026-11-29T00:00:00Z"
      }),
      "orders.dlq",
      at
    )
    expect(message.key).toEqual(Buffer.from("order-1"))
    expect(message.value).toEqual(Buffer.from([0x7b, 0xff, 0x7d]))
    expect(message.headers).toEqual({
      "trace-id": Buffer.from("abc"),
      "replay.of": "orders.dlq/1/42",
      "replay.at": "2026-11-30T09:00:00.000Z"
    })
  })

  it("keeps a header the producer repeated, every value in order", () => {
    const message = replayMessage(
      { ...stored({}), headers: ["a", "b"].map((v) => ({ name: "tag", value: Buffer.from(v) })) },
      "orders.dlq",
      new Date()
    )
    expect(message.headers?.["tag"]).toEqual([Buffer.from("a"), Buffer.from("b")])
  })
})

// ---------------------------------------------------------------------------------------------
// Replay on the index in a real PostgreSQL, sending to a fake broker (`target` below) that can
// park what it is sent again, refuse some, or take its time: see replay.test.ts for Kafka.

/** `dead_letters.replay_page_bytes` for these tests. */
const PAGE_BYTES = 10_000

/** What the fake broker does with a replayed message; tests set it, one at a time. */
const broker = {
  /** Refuse the messages whose key this says. */
  refuses: (_key: string): boolean => false,
  /** Park each message again, as the pipeline would one still invalid: a new letter of now. */
  parksAgain: false,
  delay: Duration.zero,
  sent: [] as Array<{ readonly key: string; readonly replayOf: string }>
}

let nextOffset = 1_000

const letterOf = (kind: string, valueBytes: number, failedAt: Date, replayOf: string | null = null) => {
  const offset = String(nextOffset++)
  return {
    partition: 0,
    offset,
    kind,
    detail: "still wrong",
    failedAt,
    source: null,
    key: Buffer.from(`k-${offset}`),
    value: Buffer.alloc(valueBytes, 0x61),
    headers: [],
    orderUid: null,
    replayOf
  } satisfies IndexedLetter
}

const fakeBroker = Layer.effectDiscard(
  Effect.gen(function* () {
    const index = yield* DeadLetterIndex
    const replay = yield* DeadLetterReplay
    yield* replay.attach({
      deadLetterTopic: "orders.dlq",
      send: (messages) =>
        Effect.gen(function* () {
          yield* Effect.sleep(broker.delay)
          const taken = messages.map((m) => !broker.refuses(String(m.key)))
          for (const [i, m] of messages.entries()) {
            if (!taken[i]) continue
            const replayOf = String((m.headers ?? {})[ReplayHeaders.of])
            broker.sent.push({ key: String(m.key), replayOf })
            if (broker.parksAgain) {
              const kind = String(m.key).split("|")[0]!
              const copy = letterOf(kind, Buffer.byteLength(m.value as Buffer), new Date(), replayOf)
              yield* index.upsert([{ ...copy, key: Buffer.from(`${kind}|copy-${copy.offset}`) }])
            }
          }
          return taken
        }).pipe(Effect.orDie)
    })
  })
)

const replayStack = fakeBroker.pipe(
  Layer.provideMerge(DeadLetterReplay.Default),
  Layer.provideMerge(DeadLetterIndex.Default),
  Layer.provideMerge(TestDatabase),
  Layer.provide(
    Layer.setConfigProvider(ConfigProvider.fromJson({ dead_letters: { replay_page_bytes: PAGE_BYTES } }))
  )
)

/** Letters of a kind of their own (so tests do not see each other's), keyed `kind|…`. */
const parkLetters = (
  sizes: ReadonlyArray<number>,
  failedAt = (i: number) => new Date(Date.now() - 60_000 + i)
) =>
  Effect.gen(function* () {
    const kind = `test-${randomBytes(4).toString("hex")}`
    const letters = sizes.map((size, i) => {
      const l = letterOf(kind, size, failedAt(i))
      return { ...l, key: Buffer.from(`${kind}|${l.offset}`) }
    })
    yield* (yield* DeadLetterIndex).upsert(letters)
    return { kind, letters, keys: letters.map((l) => l.key.toString()) }
  })

const options = (o: Partial<ReplayOptions> = {}): ReplayOptions => ({
  dryRun: false,
  limit: 500,
  cursor: Option.none(),
  includeReplayed: false,
  requestedBy: "test",
  ...o
})

/** A run: its pages, following next_cursor to the end (failing past `maxPages`). */
const runAll = (selection: Selection, o: Partial<ReplayOptions> = {}, maxPages = 20) =>
  Effect.gen(function* () {
    const replay = yield* DeadLetterReplay
    const pages: Array<ReplayResult> = []
    let cursor = Option.none<string>()
    do {
      if (pages.length === maxPages) throw new Error(`the run did not end within ${maxPages} pages`)
      const page = yield* replay.replay(selection, options({ ...o, cursor }))
      pages.push(page)
      cursor = page.nextCursor
    } while (Option.isSome(cursor))
    return pages
  })

const keysOf = (pages: ReadonlyArray<ReplayResult>, outcome?: string) =>
  pages
    .flatMap((p) => p.letters.filter((l) => outcome === undefined || l.outcome === outcome))
    .map((l) => l.letter.key!.toString())

const resetBroker = () => {
  broker.refuses = () => false
  broker.parksAgain = false
  broker.delay = Duration.zero
  broker.sent.length = 0
}

layer(replayStack, { excludeTestServices: true, timeout: "60 seconds" })("replay on the index", (it) => {
  it.effect(
    "following next_cursor ends, and never takes the copies its own letters parked again (the first page fixes until)",
    () =>
      Effect.gen(function* () {
        resetBroker()
        broker.parksAgain = true
        const { kind, keys } = yield* parkLetters([10, 10, 10, 10, 10])
        // No until given: the first page fixes it; each page sends two, whose copies are parked
        // (newer than every letter, so after the cursor) before the next page is asked for.
        const pages = yield* runAll({ _tag: "Filter", kind }, { limit: 2 })
        expect(pages.map((p) => p.letters.length)).toEqual([2, 2, 1])
        expect(keysOf(pages, "sent")).toEqual(keys)
        expect(broker.sent.every((s) => !s.key.includes("copy"))).toBe(true)
        const until = Option.getOrThrow(pages[0]!.until).getTime()
        expect(pages.every((p) => Option.getOrThrow(p.until).getTime() === until)).toBe(true)
        // The copies are there, parked after the run began: the next run's letters.
        const next = yield* runAll({ _tag: "Filter", kind }, { dryRun: true })
        expect(keysOf(next).every((k) => k.includes("copy"))).toBe(true)
        expect(keysOf(next)).toHaveLength(5)
      })
  )

  it.effect(
    "a second run leaves out the letters already replayed, and says how many; include_replayed takes them; refused ones are taken again",
    () =>
      Effect.gen(function* () {
        resetBroker()
        const { kind, keys } = yield* parkLetters([10, 10, 10, 10])
        broker.refuses = (key) => key === keys[3]
        const first = yield* runAll({ _tag: "Filter", kind })
        expect(keysOf(first, "sent")).toEqual(keys.slice(0, 3))
        expect(keysOf(first, "failed")).toEqual([keys[3]])
        expect(first[0]).toMatchObject({ selected: Option.some(4), alreadyReplayed: Option.some(0) })

        broker.refuses = () => false
        const second = yield* runAll({ _tag: "Filter", kind })
        expect(keysOf(second, "sent")).toEqual([keys[3]])
        expect(second[0]).toMatchObject({ selected: Option.some(1), alreadyReplayed: Option.some(3) })

        const third = yield* runAll({ _tag: "Filter", kind })
        expect(keysOf(third)).toEqual([])
        expect(third[0]).toMatchObject({ selected: Option.some(0), alreadyReplayed: Option.some(4) })

        const again = yield* runAll({ _tag: "Filter", kind }, { includeReplayed: true })
        expect(keysOf(again, "sent")).toEqual(keys)
        expect(again[0]).toMatchObject({ selected: Option.some(4), alreadyReplayed: Option.some(4) })
        expect(broker.sent.map((s) => s.key)).toEqual([...keys.slice(0, 3), keys[3], ...keys])
      })
  )

  it.effect("two runs at once never send the same letter: a claim takes each letter for one of them", () =>
    Effect.gen(function* () {
      resetBroker()
      const { kind, keys } = yield* parkLetters(Array.from({ length: 12 }, () => 10))
      const index = yield* DeadLetterIndex
      // Both have chosen the same page before either claims it: the claims split it.
      const selection: Selection = { _tag: "Filter", kind }
      const page = { limit: 500, maxBytes: PAGE_BYTES, includeReplayed: false, cursor: Option.none<string>() }
      const [a, b] = yield* Effect.all([
        index.select(selection, page, new Date()),
        index.select(selection, page, new Date())
      ])
      expect(a!.letters).toHaveLength(12)
      expect(b!.letters).toEqual(a!.letters)
      const claims = yield* Effect.all(
        [
          index.claim(a!.letters, false, Duration.minutes(1)),
          index.claim(b!.letters, false, Duration.minutes(1))
        ],
        { concurrency: 2 }
      )
      const claimed = claims.flatMap((c) => c.letters.map((l) => l.key!.toString()))
      expect(claimed.sort()).toEqual([...keys].sort())
      // Held: a replay now takes none of them.
      const meanwhile = yield* runAll(selection)
      expect(keysOf(meanwhile)).toEqual([])
      for (const c of claims)
        yield* index.settle(
          c.token,
          c.letters.map((l) => ({ ...l, sent: false })),
          new Date()
        )

      // Two whole runs at once, each sending slowly, page by page.
      broker.delay = Duration.millis(100)
      const runs = yield* Effect.all([runAll(selection, { limit: 3 }), runAll(selection, { limit: 3 })], {
        concurrency: 2
      })
      const sent = broker.sent.map((s) => s.key)
      expect([...sent].sort()).toEqual([...keys].sort())
      expect(runs.flatMap((r) => keysOf(r, "sent")).sort()).toEqual([...keys].sort())
    })
  )

  it.effect("letters held by a replay that died are taken again once the hold runs out", () =>
    Effect.gen(function* () {
      resetBroker()
      const { kind, keys, letters } = yield* parkLetters([10, 10])
      const index = yield* DeadLetterIndex
      yield* index.claim(letters, false, Duration.millis(1))
      yield* Effect.sleep("50 millis")
      expect(keysOf(yield* runAll({ _tag: "Filter", kind }), "sent")).toEqual(keys)
    })
  )

  it.effect(
    "a page stops before the letter that would take it past replay_page_bytes, with at least one letter, and next_cursor leads on",
    () =>
      Effect.gen(function* () {
        resetBroker()
        // Each letter is its value, key and headers: 3,000 + 20 bytes or so, so three make a page.
        const { kind, keys } = yield* parkLetters([3_000, 3_000, 3_000, 3_000, 25_000, 100])
        const pages = yield* runAll({ _tag: "Filter", kind })
        expect(pages.map((p) => p.letters.length)).toEqual([3, 1, 1, 1])
        expect(keysOf(pages, "sent")).toEqual(keys)
        const dry = yield* runAll({ _tag: "Filter", kind }, { dryRun: true, includeReplayed: true, limit: 2 })
        expect(dry.map((p) => p.letters.length)).toEqual([2, 2, 1, 1])
      })
  )
})
