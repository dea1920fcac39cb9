/** fast-check generators of orders that obey every business rule, and ways to break one rule. */
import * as fc from "fast-check"
import { discountedPrice, type OrderJson } from "../../src/orders/Order.ts"

const text = (min: number, max: number) => fc.string({ unit: "grapheme", minLength: min, maxLength: max })
const word = (min: number, max: number) => fc.stringMatching(new RegExp(`^[a-zA-Z0-9]{${min},${max}}$`))
/** Ids and timestamps beyond 2^31 occur in real data and must survive. */
const bigId = fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER })
const money = fc.integer({ min: 0, max: 10_000_000 })

const timestamp = fc
  .date({ min: new Date("2000-01-01T00:00:00Z"), max: new Date("2099-12-31T23:59:59Z"), noInvalidDate: true })
  .map((d) => d.toISOString().replace(/\.\d{3}Z$/, "Z"))

export const arbitraryOrder: fc.Arbitrary<OrderJson> = fc
  .record({
    order_uid: word(8, 40),
    track_number: word(4, 20),
    entry: word(1, 8),
    delivery: fc.record({
      name: text(1, 40),
      phone: fc.stringMatching(/^\+[0-9]{7,15}$/),
      zip: word(0, 10),
      city: text(1, 30),
      address: text(1, 60),
      region: text(0, 30),
      email: fc.emailAddress()
    }),
    transaction: word(4, 40),
    request_id: word(0, 20),
    currency: fc.constantFrom("USD", "EUR", "RUB", "KZT", "JPY"),
    provider: word(1, 20),
    payment_dt: bigId,
    bank: word(0, 20),
    delivery_cost: money,
    custom_fee: money,
    items: fc.array(
      fc.record({
        chrt_id: bigId,
        price: money,
        rid: word(1, 30),
        name: text(1, 40),
        sale: fc.integer({ min: 0, max: 100 }),
        size: word(0, 4),
        nm_id: bigId,
        brand: text(0, 30),
        status: fc.integer({ min: 0, max: 999 })
      }),
      { minLength: 1, maxLength: 5 }
    ),
    locale: fc.constantFrom("en", "ru", "de", "kk"),
    internal_signature: word(0, 10),
    customer_id: word(1, 20),
    delivery_service: word(1, 10),
    shardkey: fc.integer({ min: 0, max: 9 }).map(String),
    sm_id: fc.integer({ min: 0, max: 1000 }),
    date_created: timestamp,
    oof_shard: fc.integer({ min: 0, max: 9 }).map(String)
  })
  .map((r): OrderJson => {
    const items = r.items.map((i) => ({
      chrt_id: i.chrt_id,
      track_number: r.track_number,
      price: i.price,
      rid: i.rid,
      name: i.name,
      sale: i.sale,
      size: i.size,
      total_price: discountedPrice(i.price, i.sale),
      nm_id: i.nm_id,
      brand: i.brand,
      status: i.status
    }))
    const goods_total = items.reduce((s, i) => s + i.total_price, 0)
    return {
      order_uid: r.order_uid,
      track_number: r.track_number,
      entry: r.entry,
      delivery: r.delivery,
      payment: {
        transaction: r.transaction,
        request_id: r.request_id,
        currency: r.currency,
        provider: r.provider,
        amount: goods_total + r.delivery_cost + r.custom_fee,
        payment_dt: r.payment_dt,
        bank: r.bank,
        delivery_cost: r.delivery_cost,
        goods_total,
        custom_fee: r.custom_fee
      },
      items,
      locale: r.locale,
      internal_signature: r.internal_signature,
      customer_id: r.customer_id,
      delivery_service: r.delivery_service,
      shardkey: r.shardkey,
      sm_id: r.sm_id,
      date_created: r.date_created,
      oof_shard: r.oof_shard
    }
  })

type Mutable<T> = { -readonly [K in keyof T]: T[K] extends object ? Mutable<T[K]> : T[K] }
const clone = (o: OrderJson): Mutable<OrderJson> => structuredClone(o) as Mutable<OrderJson>

/** Each way to break exactly one business rule of a valid order. */
export const ruleBreakers: Record<string, (o: OrderJson, n: number) => OrderJson> = {
  "item total_price off": (o, n) => {
    const c = clone(o)
    c.items[n % c.items.length]!.total_price += 1
    return c
  },
  "goods_total off": (o) => {
    const c = clone(o)
    c.payment.goods_total += 1
    return c
  },
  "amount off": (o) => {
    const c = clone(o)
    c.payment.amount += 1
    return c
  },
  "item track_number differs": (o, n) => {
    const c = clone(o)
    c.items[n % c.items.length]!.track_number = `${c.track_number}X`
    return c
  },
  "sale above 100": (o, n) => {
    const c = clone(o)
    c.items[n % c.items.length]!.sale = 101 + (n % 50)
    return c
  },
  "sale below 0": (o, n) => {
    const c = clone(o)
    c.items[n % c.items.length]!.sale = -1 - (n % 50)
    return c
  },
  "no items": (o) => {
    const c = clone(o)
    c.items = []
    return c
  }
}

/** `count` distinct valid orders, reproducible from `seed`, with unique ids `${prefix}-${i}`. */
export const sampleOrders = (count: number, seed = 42, prefix = "order"): Array<OrderJson> =>
  fc
    .sample(arbitraryOrder, { numRuns: count, seed })
    .map((o, i) => ({ ...o, order_uid: `${prefix}-${i}-${o.order_uid}`.slice(0, 128) }))
