import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { chunksByBytes, DeadLetterHeaders, type DeadLetter } from "../../src/kafka/DeadLetters.ts"
import { ingestStack } from "../support/app.ts"
import { TestDatabase } from "../support/database.ts"
import { readFixture } from "../support/fixtures.ts"
import { eventually, freshTopics, header, offsets, produce, readTopic } from "../support/kafka.ts"

const letter = (bytes: number): DeadLetter => ({
  kind: "too_large",
  detail: "too large",
  key: null,
  value: Buffer.alloc(bytes),
  source: { topic: "orders", partition: 0, offset: "0" }
})

describe("dead letters are sent in requests the broker accepts", () => {
  it("letters are grouped, in order, so that no group exceeds the limit unless one letter alone does", () => {
    const letters = [letter(300_000), letter(300_000), letter(10), letter(900_000), letter(10)]
    const chunks = chunksByBytes(letters, 512 * 1024)
    expect(chunks.flat()).toEqual(letters)
    expect(chunks.map((c) => c.length)).toEqual([1, 2, 1, 1])
  })

  it("no letters, no requests", () => {
    expect(chunksByBytes([], 1024)).toEqual([])
  })
})

/** A date and time in ISO 8601's extended format, with its offset from UTC. */
const ISO_8601 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/

describe("a dead letter on a real Kafka broker", () => {
  it.live(
    "says when it was parked: dlq.failed.at is ISO 8601, after the message was sent and before its offset was seen committed",
    () => {
      const topics = freshTopics()
      const rejects = ["invalid/not-json.txt", "invalid/amount-mismatch.json"]
      return Effect.gen(function* () {
        const before = Date.now()
        yield* produce(
          topics.brokers,
          topics.topic,
          rejects.map((name) => ({ key: name, value: readFixture(name) })),
          0
        )
        yield* eventually(
          "every offset is committed",
          Effect.map(offsets(topics.brokers, topics.topic, topics.groupId), ({ committed, ends }) =>
            Object.entries(ends).every(([p, end]) => end === 0 || committed[Number(p)] === end)
          )
        )
        const after = Date.now()
        const letters = yield* readTopic(topics.brokers, topics.dlqTopic)
        expect(letters.map((l) => l.key!.toString()).sort()).toEqual([...rejects].sort())
        for (const l of letters) {
          const failedAt = header(l, DeadLetterHeaders.failedAt)
          expect(failedAt, l.key!.toString()).toMatch(ISO_8601)
          const at = Date.parse(failedAt!)
          expect(at).toBeGreaterThanOrEqual(before)
          expect(at).toBeLessThanOrEqual(after)
        }
      }).pipe(Effect.provide(ingestStack(topics, TestDatabase)))
    },
    90_000
  )
})
