import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * Normalized tables, one row per order in `orders` and its parts in `deliveries`, `payments` and
 * `items`. `bigint` wherever a value may exceed int32. `date_created` keeps the producer's text so
 * the order reads back exactly as it was received; `created_at` is the same instant, for sorting.
 * `content_hash` (SHA-256 of the canonical JSON) tells a redelivery from a conflicting order.
 */
export default Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  yield* sql`
    CREATE TABLE orders (
      order_uid          text        PRIMARY KEY CHECK (length(order_uid) BETWEEN 1 AND 128),
      track_number       text        NOT NULL CHECK (track_number <> ''),
      entry              text        NOT NULL,
      locale             text        NOT NULL,
      internal_signature text        NOT NULL,
      customer_id        text        NOT NULL CHECK (customer_id <> ''),
      delivery_service   text        NOT NULL,
      shardkey           text        NOT NULL,
      sm_id              bigint      NOT NULL,
      date_created       text        NOT NULL,
      created_at         timestamptz NOT NULL,
      oof_shard          text        NOT NULL,
      content_hash       bytea       NOT NULL CHECK (length(content_hash) = 32),
      stored_at          timestamptz NOT NULL DEFAULT now()
    )`
  yield* sql`CREATE INDEX orders_recent_idx ON orders (created_at DESC, order_uid DESC)`
  yield* sql`
    CREATE TABLE deliveries (
      order_uid text PRIMARY KEY REFERENCES orders (order_uid) ON DELETE CASCADE,
      name      text NOT NULL CHECK (name <> ''),
      phone     text NOT NULL CHECK (phone <> ''),
      zip       text NOT NULL,
      city      text NOT NULL CHECK (city <> ''),
      address   text NOT NULL CHECK (address <> ''),
      region    text NOT NULL,
      email     text NOT NULL
    )`
  yield* sql`
    CREATE TABLE payments (
      order_uid     text   PRIMARY KEY REFERENCES orders (order_uid) ON DELETE CASCADE,
      transaction   text   NOT NULL CHECK (transaction <> ''),
      request_id    text   NOT NULL,
      currency      text   NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
      provider      text   NOT NULL CHECK (provider <> ''),
      amount        bigint NOT NULL CHECK (amount >= 0),
      payment_dt    bigint NOT NULL CHECK (payment_dt >= 0),
      bank          text   NOT NULL,
      delivery_cost bigint NOT NULL CHECK (delivery_cost >= 0),
      goods_total   bigint NOT NULL CHECK (goods_total >= 0),
      custom_fee    bigint NOT NULL CHECK (custom_fee >= 0),
      CHECK (amount = goods_total + delivery_cost + custom_fee)
    )`
  yield* sql`
    CREATE TABLE items (
      order_uid    text    NOT NULL REFERENCES orders (order_uid) ON DELETE CASCADE,
      position     integer NOT NULL CHECK (position >= 0),
      chrt_id      bigint  NOT NULL CHECK (chrt_id >= 0),
      track_number text    NOT NULL CHECK (track_number <> ''),
      price        bigint  NOT NULL CHECK (price >= 0),
      rid          text    NOT NULL CHECK (rid <> ''),
      name         text    NOT NULL CHECK (name <> ''),
      sale         integer NOT NULL CHECK (sale BETWEEN 0 AND 100),
      size         text    NOT NULL,
      total_price  bigint  NOT NULL CHECK (total_price >= 0),
      nm_id        bigint  NOT NULL CHECK (nm_id >= 0),
      brand        text    NOT NULL,
      status       bigint  NOT NULL,
      PRIMARY KEY (order_uid, position)
    )`
})
