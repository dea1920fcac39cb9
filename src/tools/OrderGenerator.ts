/**
 * Realistic orders for feeding the service: every generated order passes the decoder, and
 * `makeInvalid` turns one into a message the decoder rejects with a chosen kind.
 */
import { base, en, Faker, faker as defaultFaker } from "@faker-js/faker"
import { discountedPrice, type OrderJson } from "../orders/Order.ts"
import type { DecodeRejectionKind } from "../orders/Rejection.ts"

/** The service's default `max_message_bytes`; `too_large` messages are padded just beyond it. */
export const DEFAULT_MAX_MESSAGE_BYTES = 1024 * 1024
const PADDING_CHUNK = 10_000

const CURRENCIES = ["USD", "EUR", "RUB", "GBP", "KZT", "AMD"] as const
const PROVIDERS = ["wbpay", "stripe", "paypal", "applepay"] as const
const BANKS = ["alpha", "sber", "tinkoff", "vtb", "revolut", ""] as const
const DELIVERY_SERVICES = ["meest", "dhl", "cdek", "ups", "boxberry"] as const
const LOCALES = ["en", "ru", "de", "kk", "hy"] as const
const SIZES = ["0", "XS", "S", "M", "L", "XL", "38", "42"] as const
const SALES = [0, 0, 0, 5, 10, 15, 20, 25, 30, 50, 70] as const
const STATUSES = [200, 201, 202, 300, 400] as const

// A fixed window (not "recent") keeps a seeded run reproducible on any day.
const CREATED_FROM = "2021-01-01T00:00:00Z"
const CREATED_TO = "2025-12-31T23:59:59Z"

const hex = (f: Faker, length: number) => f.string.hexadecimal({ length, casing: "lower", prefix: "" })

/** One order that satisfies every rule of the model. Uses the global faker unless given one. */
export const generateOrder = (f: Faker = defaultFaker): OrderJson => {
  const orderUid = hex(f, 32)
  const trackNumber = `WB${f.string.alpha({ length: 12, casing: "upper" })}`
  const created = f.date.between({ from: CREATED_FROM, to: CREATED_TO })
  const firstName = f.person.firstName()
  const lastName = f.person.lastName()

  const items = Array.from({ length: f.number.int({ min: 1, max: 5 }) }, () => {
    const price = f.number.int({ min: 50, max: 100_000 })
    const sale = f.helpers.arrayElement(SALES)
    return {
      chrt_id: f.number.int({ min: 1_000_000, max: 99_999_999 }),
      track_number: trackNumber,
      price,
      rid: hex(f, 21),
      name: f.commerce.productName(),
      sale,
      size: f.helpers.arrayElement(SIZES),
      total_price: discountedPrice(price, sale),
      nm_id: f.number.int({ min: 100_000, max: 9_999_999 }),
      brand: f.company.name(),
      status: f.helpers.arrayElement(STATUSES)
    }
  })
  const goodsTotal = items.reduce((sum, item) => sum + item.total_price, 0)
  const deliveryCost = f.helpers.arrayElement([0, 500, 1000, 1500, f.number.int({ min: 100, max: 3000 })])
  const customFee = f.datatype.boolean({ probability: 0.2 }) ? f.number.int({ min: 1, max: 500 }) : 0

  return {
    order_uid: orderUid,
    track_number: trackNumber,
    entry: "WBIL",
    delivery: {
      name: `${firstName} ${lastName}`,
      phone: f.phone.number({ style: "international" }),
      zip: f.location.zipCode(),
      city: f.location.city(),
      address: f.location.streetAddress(),
      region: f.location.state(),
      email: f.internet.email({ firstName, lastName }).toLowerCase()
    },
    payment: {
      transaction: orderUid,
      request_id: f.datatype.boolean({ probability: 0.3 }) ? hex(f, 16) : "",
      currency: f.helpers.arrayElement(CURRENCIES),
      provider: f.helpers.arrayElement(PROVIDERS),
      amount: goodsTotal + deliveryCost + customFee,
      // Paid within ten minutes of the order being created.
      payment_dt: Math.floor(created.getTime() / 1000) + f.number.int({ min: 0, max: 600 }),
      bank: f.helpers.arrayElement(BANKS),
      delivery_cost: deliveryCost,
      goods_total: goodsTotal,
      custom_fee: customFee
    },
    items,
    locale: f.helpers.arrayElement(LOCALES),
    internal_signature: "",
    customer_id: f.internet.username({ firstName, lastName }),
    delivery_service: f.helpers.arrayElement(DELIVERY_SERVICES),
    shardkey: String(f.number.int({ min: 0, max: 9 })),
    sm_id: f.number.int({ min: 1, max: 999 }),
    date_created: created.toISOString().replace(/\.\d{3}Z$/, "Z"),
    oof_shard: String(f.number.int({ min: 1, max: 9 }))
  }
}

/** A faker of its own, so seeding it does not disturb other users of the global one. */
export const makeFaker = (seed?: number): Faker => {
  const f = new Faker({ locale: [en, base] })
  if (seed !== undefined) f.seed(seed)
  return f
}

/** `count` orders with distinct `order_uid`s; the same seed gives the same orders. */
export const generateOrders = (count: number, seed?: number): Array<OrderJson> => {
  const f = makeFaker(seed)
  const seen = new Set<string>()
  const out: Array<OrderJson> = []
  while (out.length < count) {
    const order = generateOrder(f)
    if (seen.has(order.order_uid)) continue
    seen.add(order.order_uid)
    out.push(order)
  }
  return out
}

const encoder = new TextEncoder()
const toBytes = (value: unknown): Uint8Array => encoder.encode(JSON.stringify(value))

/** Variants per kind, chosen by `n` so a run of invalid messages covers all of them. */
const schemaBreakers: ReadonlyArray<(o: OrderJson) => unknown> = [
  (o) => ({ ...o, payment: { ...o.payment, amount: String(o.payment.amount) } }),
  (o) => {
    const { payment: _payment, ...rest } = o
    return rest
  },
  (o) => ({ ...o, order_uid: "" }),
  (o) => ({ ...o, date_created: "26.11.2021 06:22" }),
  (o) => ({ ...o, items: o.items.map((item, i) => (i === 0 ? { ...item, price: -item.price - 1 } : item)) }),
  (o) => [o]
]

const businessRuleBreakers: ReadonlyArray<(o: OrderJson) => OrderJson> = [
  (o) => ({ ...o, payment: { ...o.payment, amount: o.payment.amount + 1 } }),
  (o) => ({ ...o, items: o.items.map((item, i) => (i === 0 ? { ...item, sale: 101 } : item)) }),
  (o) => ({
    ...o,
    items: o.items.map((item, i) => (i === 0 ? { ...item, track_number: `${o.track_number}X` } : item))
  })
]

/**
 * A message the decoder rejects as `kind`. `n` picks the variant (any integer); `too_large`
 * messages are valid orders padded to one byte more than `maxBytes`.
 */
export const makeInvalid = (
  order: OrderJson,
  kind: DecodeRejectionKind,
  n: number,
  maxBytes: number = DEFAULT_MAX_MESSAGE_BYTES
): Uint8Array => {
  const pick = <A>(variants: ReadonlyArray<A>): A => variants[Math.abs(Math.trunc(n)) % variants.length]!
  switch (kind) {
    case "invalid_json": {
      const text = JSON.stringify(order)
      // Cut somewhere in the first half: always before the closing brace.
      return encoder.encode(text.slice(0, 1 + (Math.abs(Math.trunc(n)) % Math.floor(text.length / 2))))
    }
    case "schema":
      return toBytes(pick(schemaBreakers)(order))
    case "business_rule":
      return toBytes(pick(businessRuleBreakers)(order))
    case "too_large": {
      // Excess properties are ignored by the decoder, so only the size makes this one invalid. The
      // padding is an array of strings, each within the decoder's bound on string length.
      const padding = [""]
      let missing = maxBytes + 1 - toBytes({ ...order, padding }).byteLength
      while (missing > 0) {
        const last = padding.length - 1
        const room = PADDING_CHUNK - padding[last]!.length
        // A further element costs a comma and two quotes: the last few bytes go to the last one.
        const add = room > 0 ? Math.min(room, missing) : missing <= 3 ? missing : 0
        if (add > 0) {
          padding[last] += "x".repeat(add)
          missing -= add
        } else {
          padding.push("")
          missing -= 3
        }
      }
      return toBytes({ ...order, padding })
    }
  }
}
