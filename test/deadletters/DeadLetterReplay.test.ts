/**
 * Replay's pure parts: what a replayed message carries, and who may ask for one. Reading a letter
 * off the topic into the index, too. No servers: see replay.test.ts for the real broker.
 */
import { describe, expect, it } from "@effect/vitest"
import type { KafkaMessage } from "kafkajs"
import { letterFromMessage, parsePosition } from "../../src/deadletters/DeadLetterIndex.ts"
import { replayMessage } from "../../src/deadletters/DeadLetterReplay.ts"
import { DeadLetterHeaders, toKafkaMessage } from "../../src/kafka/DeadLetters.ts"

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
