import { describe, expect, it } from "@effect/vitest"
import { Either } from "effect"
import { decodeOrderBytes, orderToJson } from "../../src/orders/OrderDecoder.ts"
import {
  DEFAULT_MAX_MESSAGE_BYTES,
  generateOrder,
  generateOrders,
  makeFaker,
  makeInvalid
} from "../../src/tools/OrderGenerator.ts"
import { DecodeRejectionKinds } from "../../src/orders/Rejection.ts"

const SEEDS = Array.from({ length: 300 }, (_, i) => i)
// Small enough that padding hundreds of orders past it stays fast.
const MAX_BYTES = 16 * 1024
const bytes = (value: unknown) => Buffer.from(JSON.stringify(value))

describe("generated orders", () => {
  it("every generated order is accepted by the decoder and re-encodes to the same JSON", () => {
    for (const seed of SEEDS) {
      for (const order of generateOrders(3, seed)) {
        const decoded = decodeOrderBytes(bytes(order), MAX_BYTES)
        if (Either.isLeft(decoded)) throw new Error(`seed ${seed}: ${decoded.left.message}`)
        expect(orderToJson(decoded.right)).toStrictEqual(order)
      }
    }
  })

  it("the same seed gives the same orders, another seed other orders", () => {
    expect(generateOrders(5, 42)).toStrictEqual(generateOrders(5, 42))
    expect(generateOrders(1, 42)[0]!.order_uid).not.toBe(generateOrders(1, 43)[0]!.order_uid)
  })

  it("order ids are unique across a large run and fit the id limit", () => {
    const orders = generateOrders(5000, 7)
    expect(new Set(orders.map((o) => o.order_uid)).size).toBe(5000)
    for (const o of orders) expect(o.order_uid).toMatch(/^[0-9a-f]{32}$/)
  })

  it("orders look like the model: 1–5 items, RFC 3339 dates without milliseconds, payment near creation", () => {
    const itemCounts = new Set<number>()
    const currencies = new Set<string>()
    for (const seed of SEEDS) {
      const order = generateOrder(makeFaker(seed))
      itemCounts.add(order.items.length)
      currencies.add(order.payment.currency)
      expect(order.date_created).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/)
      const createdSeconds = Date.parse(order.date_created) / 1000
      expect(order.payment.payment_dt - createdSeconds).toBeGreaterThanOrEqual(0)
      expect(order.payment.payment_dt - createdSeconds).toBeLessThanOrEqual(600)
      expect(order.items.every((item) => item.track_number === order.track_number)).toBe(true)
      expect(order.payment.amount).toBe(
        order.payment.goods_total + order.payment.delivery_cost + order.payment.custom_fee
      )
    }
    expect([...itemCounts].sort()).toEqual([1, 2, 3, 4, 5])
    expect(currencies.size).toBeGreaterThan(2)
  })
})

describe("invalid messages", () => {
  it.each(DecodeRejectionKinds)("every %s message is rejected with that kind", (kind) => {
    const details = new Set<string>()
    for (const seed of SEEDS) {
      const [order] = generateOrders(1, seed)
      const decoded = decodeOrderBytes(makeInvalid(order!, kind, seed, MAX_BYTES), MAX_BYTES)
      if (Either.isRight(decoded)) throw new Error(`seed ${seed}: an invalid ${kind} message was accepted`)
      expect(decoded.left.kind).toBe(kind)
      details.add(decoded.left.detail.replace(/[^a-z_ .]/gi, "").slice(0, 40))
    }
    // The variants differ, so a run exercises more than one way of being wrong.
    if (kind !== "too_large") expect(details.size).toBeGreaterThan(1)
  })

  it("schema and business rule variants name the field they break", () => {
    const [order] = generateOrders(1, 1)
    const detail = (kind: "schema" | "business_rule", n: number) => {
      const decoded = decodeOrderBytes(makeInvalid(order!, kind, n), MAX_BYTES)
      return Either.isLeft(decoded) ? decoded.left.detail : "accepted"
    }
    expect(detail("schema", 0)).toMatch(/^payment\.amount: Expected number/)
    expect(detail("schema", 1)).toContain("payment: is missing")
    expect(detail("schema", 2)).toContain("order_uid: must not be empty")
    expect(detail("business_rule", 0)).toContain("payment.amount: expected")
    expect(detail("business_rule", 1)).toContain("sale must be between 0 and 100")
    expect(detail("business_rule", 2)).toContain("track_number: expected the order's track number")
  })

  it("a too_large message is one byte over the limit and would otherwise be a valid order", () => {
    const [order] = generateOrders(1, 3)
    const message = makeInvalid(order!, "too_large", 0)
    expect(message.byteLength).toBe(DEFAULT_MAX_MESSAGE_BYTES + 1)
    expect(Either.isRight(decodeOrderBytes(message, DEFAULT_MAX_MESSAGE_BYTES + 1))).toBe(true)
  })
})
