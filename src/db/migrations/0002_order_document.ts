import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * `document`: the order's canonical JSON — exactly the bytes `GET /order/{uid}` serves — written in
 * the same transaction as the normalized rows it repeats. Reads (cache warm-up, cache misses) take
 * it as it is instead of rebuilding the order from four tables. Rows stored before this column
 * existed keep NULL and are rebuilt from their tables when read.
 */
export default Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  yield* sql`ALTER TABLE orders ADD COLUMN document text`
})
