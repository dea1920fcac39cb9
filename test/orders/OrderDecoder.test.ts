import { describe, expect, it } from "@effect/vitest"
import { Either } from "effect"
import * as fc from "fast-check"
import {
  decodeOrderBytes,
  decodeOrderValue,
  orderToJson,
  orderToJsonString
} from "../../src/orders/OrderDecoder.ts"
import { arbitraryOrder, ruleBreakers } from "../support/arbitraries.ts"
import {
  expectedRejectionKind,
  invalidFixtureNames,
  readFixture,
  readFixtureJson,
  validFixtureNames
} from "../support/fixtures.ts"

const MAX_BYTES = 1024 * 1024
const bytes = (value: unknown) => Buffer.from(JSON.stringify(value))

describe("decoding orders", () => {
  it.each(validFixtureNames())("%s decodes and re-encodes to the JSON that was received", (name) => {
    const decoded = decodeOrderBytes(readFixture(name), MAX_BYTES)
    if (Either.isLeft(decoded)) throw new Error(`rejected: ${decoded.left.message}`)
    expect(orderToJson(decoded.right)).toStrictEqual(readFixtureJson(name))
  })

  it("there is an expected kind for every invalid fixture", () => {
    expect(invalidFixtureNames().filter((n) => !(n in expectedRejectionKind))).toEqual([])
  })

  it.each(invalidFixtureNames())("%s is rejected with its kind and a reason", (name) => {
    const decoded = decodeOrderBytes(readFixture(name), MAX_BYTES)
    if (Either.isRight(decoded)) throw new Error("accepted an invalid order")
    expect(decoded.left.kind).toBe(expectedRejectionKind[name])
    expect(decoded.left.detail.length).toBeGreaterThan(5)
  })

  it("a wrongly typed field is named with its path and what was expected", () => {
    const decoded = decodeOrderBytes(readFixture("invalid/amount-as-string.json"), MAX_BYTES)
    expect(Either.isLeft(decoded) && decoded.left.detail).toMatch(
      /^payment\.amount: Expected .*number.*"1817"/
    )
  })

  it("a missing part is named", () => {
    const decoded = decodeOrderBytes(readFixture("invalid/missing-payment.json"), MAX_BYTES)
    expect(Either.isLeft(decoded) && decoded.left.detail).toContain("payment: is missing")
  })

  it("a broken business rule says what was expected", () => {
    const decoded = decodeOrderBytes(readFixture("invalid/amount-mismatch.json"), MAX_BYTES)
    expect(Either.isLeft(decoded) && decoded.left.detail).toContain("payment.amount: expected 1817")
  })

  it("a message over the size limit is rejected as too_large before it is parsed", () => {
    const big = readFixture("valid/model.json")
    const decoded = decodeOrderBytes(big, big.byteLength - 1)
    expect(Either.isLeft(decoded) && decoded.left.kind).toBe("too_large")
    expect(Either.isRight(decodeOrderBytes(big, big.byteLength))).toBe(true)
  })

  it("bytes that are not UTF-8, and a message without a value, are invalid_json", () => {
    const notUtf8 = decodeOrderBytes(Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), MAX_BYTES)
    expect(Either.isLeft(notUtf8) && notUtf8.left.kind).toBe("invalid_json")
    const tombstone = decodeOrderBytes(null, MAX_BYTES)
    expect(Either.isLeft(tombstone) && tombstone.left.kind).toBe("invalid_json")
  })

  it("integers beyond 2^31 survive a round trip; beyond 2^53 they are rejected", () => {
    const order = readFixtureJson("valid/model.json") as any
    order.payment.payment_dt = 2 ** 40 + 7
    order.items[0].chrt_id = Number.MAX_SAFE_INTEGER
    const decoded = decodeOrderBytes(bytes(order), MAX_BYTES)
    if (Either.isLeft(decoded)) throw new Error(decoded.left.message)
    expect(orderToJsonString(decoded.right)).toBe(JSON.stringify(order))
    order.items[0].nm_id = 2 ** 60
    const tooBig = decodeOrderValue(order)
    expect(Either.isLeft(tooBig) && tooBig.left.kind).toBe("schema")
  })

  it("an order id with control characters or over 128 characters is a schema error", () => {
    const order = readFixtureJson("valid/model.json") as any
    for (const uid of ["a\u0000b", "x".repeat(129), ""]) {
      const decoded = decodeOrderValue({ ...order, order_uid: uid })
      expect(Either.isLeft(decoded) && decoded.left.detail).toMatch(/^order_uid: /)
    }
  })

  it("a NUL character in any text is a schema error (PostgreSQL text cannot hold it)", () => {
    const order = readFixtureJson("valid/model.json") as any
    const decoded = decodeOrderValue({
      ...order,
      delivery: { ...order.delivery, city: "Kiryat\u0000Mozkin" }
    })
    expect(Either.isLeft(decoded) && decoded.left.detail).toMatch(/^delivery\.city: must not contain NUL/)
  })

  it.prop("any generated valid order decodes and round-trips", [arbitraryOrder], ([order]) => {
    const decoded = decodeOrderBytes(bytes(order), MAX_BYTES)
    if (Either.isLeft(decoded)) throw new Error(decoded.left.message)
    expect(JSON.parse(orderToJsonString(decoded.right))).toStrictEqual(order)
    // The fast serialisation is the schema's encoding, byte for byte (field order included).
    expect(orderToJsonString(decoded.right)).toBe(JSON.stringify(orderToJson(decoded.right)))
    expect(orderToJsonString(decoded.right)).toBe(JSON.stringify(order))
  })

  it.prop(
    "breaking any business rule is caught as business_rule",
    [arbitraryOrder, fc.constantFrom(...Object.keys(ruleBreakers)), fc.nat()],
    ([order, rule, n]) => {
      const broken = ruleBreakers[rule]!(order, n)
      const decoded = decodeOrderValue(broken)
      expect(Either.isLeft(decoded) && decoded.left.kind).toBe("business_rule")
    }
  )
})
