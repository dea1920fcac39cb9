import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * What an order summary shows besides the order's own columns — its amount, currency and number
 * of items — on `orders` itself. A search, a page of `/orders` and a live-feed event read summaries
 * by the dozen; taken from `payments` and by counting `items`, each row cost two more index
 * lookups, which came to about a third of what PostgreSQL spent on a search (see docs/perf-notes/).
 * An order never changes once stored (a redelivery or a conflicting order writes nothing), so the
 * copies cannot drift from `payments` and `items`; they are written in the same statement as the
 * order, and rows stored before are filled in here, once.
 */
export default Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  yield* sql`
    ALTER TABLE orders
      ADD COLUMN amount bigint,
      ADD COLUMN currency text,
      ADD COLUMN item_count integer`
  yield* sql`
    UPDATE orders o
    SET amount = p.amount,
        currency = p.currency,
        item_count = (SELECT count(*) FROM items i WHERE i.order_uid = o.order_uid)
    FROM payments p
    WHERE p.order_uid = o.order_uid`
  yield* sql`
    ALTER TABLE orders
      ALTER COLUMN amount SET NOT NULL,
      ALTER COLUMN currency SET NOT NULL,
      ALTER COLUMN item_count SET NOT NULL`
})
