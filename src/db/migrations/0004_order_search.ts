import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * The uids of the orders that `$1` names: one index lookup per kind, each side of every comparison
 * through `order_search_key`, as the indexes are. A phone is only tried when `$1` looks like one,
 * so that the digits inside another kind of id never match a phone. `order_search_matches(q)` runs
 * it: PL/pgSQL keeps its plan for the connection (generic, as it is the same for any key), where
 * planning the seven lookups afresh cost several times running them. Exported for the test that
 * EXPLAINs it.
 */
export const ORDER_SEARCH_MATCHES = `
        SELECT order_uid FROM orders WHERE order_uid = order_search_key('id', $1)
        UNION ALL SELECT order_uid FROM orders
          WHERE order_search_key('id', track_number) = order_search_key('id', $1)
        UNION ALL SELECT order_uid FROM orders
          WHERE order_search_key('id', customer_id) = order_search_key('id', $1)
        UNION ALL SELECT order_uid FROM deliveries
          WHERE $1 ~ '^[0-9[:space:]+()./-]+$'
            AND order_search_key('phone', phone) = order_search_key('phone', $1)
        UNION ALL SELECT order_uid FROM deliveries
          WHERE order_search_key('email', email) = order_search_key('email', $1)
        UNION ALL SELECT order_uid FROM payments
          WHERE order_search_key('id', transaction) = order_search_key('id', $1)
        UNION ALL SELECT order_uid FROM items
          WHERE order_search_key('id', rid) = order_search_key('id', $1)`

/**
 * Search and the live feed.
 *
 * `order_search_key(kind, value)` is the one normalisation of what a customer may quote: a phone
 * keeps its digits, an e-mail is trimmed and lower-cased, any other id is trimmed; blank is NULL,
 * so it never matches. Expression indexes apply it as rows are written, and a search applies the
 * same function to the text it was given, so every kind of match is one index lookup. Indexes on
 * the tables the batch already writes cost ingest no extra rows or statements.
 *
 * `feed_seq` numbers stored orders from one database-wide sequence: the live feed's event id, the
 * same on every instance.
 */
export default Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  yield* sql`
    CREATE FUNCTION order_search_key(kind text, value text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE kind
      WHEN 'phone' THEN nullif(regexp_replace(value, '[^0-9]', '', 'g'), '')
      WHEN 'email' THEN nullif(lower(btrim(value)), '')
      ELSE nullif(btrim(value), '')
    END`
  yield* sql.unsafe(`
    CREATE FUNCTION order_search_matches(q text) RETURNS SETOF text
    LANGUAGE plpgsql STABLE PARALLEL SAFE ROWS 4
    SET plan_cache_mode = force_generic_plan
    AS $body$
    BEGIN
      RETURN QUERY ${ORDER_SEARCH_MATCHES};
    END
    $body$`)
  yield* sql`CREATE INDEX orders_track_number_search_idx ON orders (order_search_key('id', track_number))`
  yield* sql`CREATE INDEX orders_customer_id_search_idx ON orders (order_search_key('id', customer_id))`
  yield* sql`CREATE INDEX deliveries_phone_search_idx ON deliveries (order_search_key('phone', phone))`
  yield* sql`CREATE INDEX deliveries_email_search_idx ON deliveries (order_search_key('email', email))`
  yield* sql`CREATE INDEX payments_transaction_search_idx ON payments (order_search_key('id', transaction))`
  yield* sql`CREATE INDEX items_rid_search_idx ON items (order_search_key('id', rid))`
  yield* sql`CREATE SEQUENCE orders_feed_seq AS bigint`
  yield* sql`ALTER TABLE orders ADD COLUMN feed_seq bigint`
  // Set apart from ADD COLUMN so that existing rows keep NULL instead of the table being rewritten.
  yield* sql`ALTER TABLE orders ALTER COLUMN feed_seq SET DEFAULT nextval('orders_feed_seq')`
})
