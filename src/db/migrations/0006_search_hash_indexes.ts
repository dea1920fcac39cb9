import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * The search indexes of migration 0004, as hash indexes. Every search is an equality on a
 * normalised key, which is all a hash index answers. It holds a 4-byte hash per row rather than
 * the key, and inserting into it compares no strings, where a B-tree compares keys, under the
 * database's collation, at every level it descends: the indexes are what storing a batch pays
 * for search, so they should cost as little as they can. Same names, same expressions.
 */
const INDEXES = [
  ["orders_track_number_search_idx", "orders", "order_search_key('id', track_number)"],
  ["orders_customer_id_search_idx", "orders", "order_search_key('id', customer_id)"],
  ["deliveries_phone_search_idx", "deliveries", "order_search_key('phone', phone)"],
  ["deliveries_email_search_idx", "deliveries", "order_search_key('email', email)"],
  ["payments_transaction_search_idx", "payments", "order_search_key('id', transaction)"],
  ["items_rid_search_idx", "items", "order_search_key('id', rid)"]
] as const

export default Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  for (const [name, table, expression] of INDEXES) {
    yield* sql.unsafe(`DROP INDEX ${name}`)
    yield* sql.unsafe(`CREATE INDEX ${name} ON ${table} USING hash ((${expression}))`)
  }
})
