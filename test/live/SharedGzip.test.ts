/**
 * Pieces compressed once and sent to many clients, each in its own order: every client's bytes
 * must be a gzip stream that any decoder (here zlib's, which checks the CRC and the length) reads
 * back as exactly what that client was sent.
 */
import { describe, expect, it } from "@effect/vitest"
import fc from "fast-check"
import { gunzipSync } from "node:zlib"
import { compress, HEADER, Trailer } from "../../src/live/SharedGzip.ts"

const concat = (parts: ReadonlyArray<Uint8Array>) => Buffer.concat(parts.map((p) => Buffer.from(p)))

/** A client's whole response: the header, the pieces it was sent, its trailer. */
const streamOf = (pieces: ReadonlyArray<ReturnType<typeof compress>>) => {
  const trailer = new Trailer()
  return concat([HEADER, ...pieces.map((p) => trailer.add(p)), trailer.bytes()])
}

const text = (s: string) => new TextEncoder().encode(s)

describe("SharedGzip", () => {
  it("a client's stream of shared pieces decodes to what it was sent, whatever the pieces and their order", () => {
    fc.assert(
      fc.property(
        fc.array(fc.uint8Array({ maxLength: 3000 }), { minLength: 0, maxLength: 12 }),
        fc.array(fc.nat(), { maxLength: 30 }),
        (contents, picks) => {
          const pieces = contents.map(compress)
          // Two clients: one sent every piece in order, one sent a selection with repeats.
          const chosen = pieces.length === 0 ? [] : picks.map((i) => i % pieces.length)
          expect(gunzipSync(streamOf(pieces))).toEqual(concat(contents))
          expect(gunzipSync(streamOf(chosen.map((i) => pieces[i]!)))).toEqual(
            concat(chosen.map((i) => contents[i]!))
          )
        }
      ),
      { numRuns: 200 }
    )
  })

  it("compresses events of the live feed's shape severalfold", () => {
    const events = Array.from(
      { length: 200 },
      (_, i) =>
        `id: ${1000 + i}\nevent: order\ndata: {"order_uid":"${(i * 7919).toString(16).padStart(32, "0")}",` +
        `"date_created":"2026-11-30T12:${String(i % 60).padStart(2, "0")}:00Z","customer_id":"customer-${i}",` +
        `"amount":${1000 + i * 13},"currency":"USD","item_count":${1 + (i % 4)}}\n\n`
    ).join("")
    const piece = compress(text(events))
    expect(piece.deflated.length * 3).toBeLessThan(text(events).length)
    expect(gunzipSync(streamOf([piece])).toString()).toBe(events)
  })

  it("a long stream (megabytes, lengths past 2^16 and 2^20) keeps a correct CRC and length", () => {
    const big = new Uint8Array(1_500_000).map((_, i) => (i * 2654435761) >>> 24)
    const pieces = [big, text("tail"), big.subarray(0, 70_000)].map(compress)
    const sent = concat([big, text("tail"), big.subarray(0, 70_000)])
    // Compared as bytes: a deep equality over megabytes takes seconds.
    expect(gunzipSync(streamOf(pieces)).equals(sent)).toBe(true)
  })

  it("a stream with nothing in it is a valid empty gzip stream", () => {
    expect(gunzipSync(streamOf([])).length).toBe(0)
    expect(gunzipSync(streamOf([compress(new Uint8Array(0))])).length).toBe(0)
  })
})
