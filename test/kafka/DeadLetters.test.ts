import { describe, expect, it } from "@effect/vitest"
import { chunksByBytes, type DeadLetter } from "../../src/kafka/DeadLetters.ts"

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
