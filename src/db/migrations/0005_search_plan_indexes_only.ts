import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * `order_search_matches` keeps one generic plan (migration 0004), planned for no key in
 * particular. When most rows share one value of a searched column — orders produced from one
 * template, all with customer id `test` — the planner expects a generic key to match most of the
 * table, and plans that lookup, for every key, as a sequential scan. Then every search read the
 * whole of `orders` or `deliveries` (200 ms with 100,000 orders, whatever was asked). With
 * sequential scans off inside the function, each lookup stays an index lookup whatever the data;
 * a key that thousands of orders share still reads them all, by index.
 */
export default Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  yield* sql`ALTER FUNCTION order_search_matches(text) SET enable_seqscan = off`
})
