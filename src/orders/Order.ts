/**
 * The order model, declared once. Decoding, the database mapping, the HTTP response and the
 * OpenAPI document all derive from these classes.
 */
import { Schema } from "effect"

/** Longest order id we accept anywhere (Kafka key, database, URL). */
export const ORDER_UID_MAX_LENGTH = 128

// eslint-disable-next-line no-control-regex
const CONTROL_CHARACTERS = /[\u0000-\u001f\u007f-\u009f]/

/** An order id: non-empty, bounded, printable. The same rule guards `GET /order/{order_uid}`. */
export const OrderUid = Schema.String.pipe(
  Schema.nonEmptyString({ message: () => "must not be empty" }),
  Schema.maxLength(ORDER_UID_MAX_LENGTH, {
    message: () => `must be at most ${ORDER_UID_MAX_LENGTH} characters`
  }),
  Schema.filter((s) => !CONTROL_CHARACTERS.test(s) || "must not contain control characters"),
  Schema.annotations({ identifier: "OrderUid", description: "Unique order id (1–128 printable characters)" })
)

/** PostgreSQL text cannot hold NUL; such a string is refused here rather than by the database. */
const NoNul = Schema.String.pipe(
  Schema.filter((s) => !s.includes("\u0000") || "must not contain NUL characters")
)
const Text = (max: number) => NoNul.pipe(Schema.maxLength(max))
const RequiredText = (max: number) =>
  NoNul.pipe(Schema.nonEmptyString({ message: () => "must not be empty" }), Schema.maxLength(max))

/** Non-negative whole number that fits a JavaScript number exactly (up to 2^53 − 1). */
const Count = Schema.Int.pipe(Schema.nonNegative(), Schema.annotations({ identifier: "NonNegativeInt" }))

/** Money in the currency's unit as the producer sends it: a non-negative integer. */
const Money = Count

/** Same pattern PostgreSQL and `Date.parse` both accept: RFC 3339 with a zone. */
const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/

/**
 * `date_created` stays the string the producer sent, so an order re-encodes to the same JSON;
 * it must be an RFC 3339 timestamp with a zone.
 */
export const Timestamp = Schema.String.pipe(
  Schema.filter(
    (s) =>
      (RFC3339.test(s) && !Number.isNaN(Date.parse(s))) ||
      `expected an RFC 3339 timestamp such as 2021-11-26T06:22:19Z, got ${JSON.stringify(s)}`
  ),
  Schema.annotations({ identifier: "Timestamp", description: "RFC 3339 timestamp with a zone" })
)

export class Delivery extends Schema.Class<Delivery>("Delivery")({
  name: RequiredText(256),
  phone: RequiredText(64),
  zip: Text(32),
  city: RequiredText(256),
  address: RequiredText(512),
  region: Text(256),
  email: Text(256).pipe(
    Schema.filter((s) => s === "" || /^[^\s@]+@[^\s@]+$/.test(s) || "expected an e-mail address")
  )
}) {}

export class Payment extends Schema.Class<Payment>("Payment")({
  transaction: RequiredText(128),
  request_id: Text(128),
  currency: Schema.String.pipe(
    Schema.pattern(/^[A-Z]{3}$/, { message: () => "expected an ISO 4217 currency code such as USD" })
  ),
  provider: RequiredText(64),
  amount: Money,
  payment_dt: Count.annotations({ description: "Payment time, Unix seconds" }),
  bank: Text(64),
  delivery_cost: Money,
  goods_total: Money,
  custom_fee: Money
}) {}

export class Item extends Schema.Class<Item>("Item")({
  chrt_id: Count,
  track_number: RequiredText(64),
  price: Money,
  rid: RequiredText(128),
  name: RequiredText(512),
  sale: Schema.Int.annotations({ description: "Discount in percent, 0..100" }),
  size: Text(32),
  total_price: Money,
  nm_id: Count,
  brand: Text(256),
  status: Schema.Int
}) {}

/** Upper bound on items per order; together with the message size limit it bounds work per message. */
export const MAX_ITEMS = 1000

/** Price after a `sale` percent discount, rounded down to a whole unit. */
export const discountedPrice = (price: number, sale: number): number =>
  Math.floor((price * (100 - sale)) / 100)

export interface RuleViolation {
  readonly path: ReadonlyArray<PropertyKey>
  readonly message: string
}

const OrderFields = Schema.Struct({
  order_uid: OrderUid,
  track_number: RequiredText(64),
  entry: Text(64),
  delivery: Delivery,
  payment: Payment,
  items: Schema.Array(Item).pipe(Schema.maxItems(MAX_ITEMS)),
  locale: Text(16),
  internal_signature: Text(512),
  customer_id: RequiredText(128),
  delivery_service: Text(64),
  shardkey: Text(16),
  sm_id: Schema.Int,
  date_created: Timestamp,
  oof_shard: Text(16)
})

/** The shape of a well-typed order, before its business rules are checked. */
export type OrderShape = typeof OrderFields.Type

/**
 * Rules that relate fields to each other. Kept apart from the field types so that a rejection can
 * say whether the message was malformed (`schema`) or well-formed but inconsistent (`business_rule`).
 */
export const businessRuleViolations = (o: OrderShape): ReadonlyArray<RuleViolation> => {
  const out: Array<RuleViolation> = []
  if (o.items.length === 0) out.push({ path: ["items"], message: "an order needs at least one item" })
  let goods = 0
  o.items.forEach((item, i) => {
    if (item.sale < 0 || item.sale > 100) {
      out.push({ path: ["items", i, "sale"], message: `sale must be between 0 and 100, got ${item.sale}` })
    } else {
      const expected = discountedPrice(item.price, item.sale)
      if (item.total_price !== expected) {
        out.push({
          path: ["items", i, "total_price"],
          message: `expected ${expected} = floor(${item.price} × (100 − ${item.sale}) / 100), got ${item.total_price}`
        })
      }
    }
    if (item.track_number !== o.track_number) {
      out.push({
        path: ["items", i, "track_number"],
        message: `expected the order's track number ${JSON.stringify(o.track_number)}, got ${JSON.stringify(item.track_number)}`
      })
    }
    goods += item.total_price
  })
  const p = o.payment
  if (p.goods_total !== goods) {
    out.push({
      path: ["payment", "goods_total"],
      message: `expected ${goods} (the sum of the items' total_price), got ${p.goods_total}`
    })
  }
  const amount = p.goods_total + p.delivery_cost + p.custom_fee
  if (p.amount !== amount) {
    out.push({
      path: ["payment", "amount"],
      message: `expected ${amount} = goods_total ${p.goods_total} + delivery_cost ${p.delivery_cost} + custom_fee ${p.custom_fee}, got ${p.amount}`
    })
  }
  return out
}

export const BUSINESS_RULES_ID = "OrderBusinessRules"

export class Order extends Schema.Class<Order>("Order")(
  OrderFields.pipe(
    Schema.filter((o) => businessRuleViolations(o), {
      identifier: BUSINESS_RULES_ID,
      description: "item totals, goods total, amount and track numbers agree"
    })
  )
) {}

/** The order as JSON, in the model's shape and field order. */
export type OrderJson = typeof Order.Encoded

export const orderFieldsSchema = OrderFields
