import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * The orders that each of `$1`'s keys names, as (key, order_uid) rows: the lookups of migration
 * 0004, each made for every key at once (a join of the keys with the index). A phone is only tried
 * for a key that looks like one. Exported for the test that EXPLAINs it.
 */
export const ORDER_SEARCH_MATCHES = `
        SELECT k.q, o.order_uid FROM unnest($1::text[]) AS k(q)
          JOIN orders o ON o.order_uid = order_search_key('id', k.q)
        UNION ALL SELECT k.q, o.order_uid FROM unnest($1::text[]) AS k(q)
          JOIN orders o ON order_search_key('id', o.track_number) = order_search_key('id', k.q)
        UNION ALL SELECT k.q, o.order_uid FROM unnest($1::text[]) AS k(q)
          JOIN orders o ON order_search_key('id', o.customer_id) = order_search_key('id', k.q)
        UNION ALL SELECT k.q, d.order_uid FROM unnest($1::text[]) AS k(q)
          JOIN deliveries d ON k.q ~ '^[0-9[:space:]+()./-]+$'
            AND order_search_key('phone', d.phone) = order_search_key('phone', k.q)
        UNION ALL SELECT k.q, d.order_uid FROM unnest($1::text[]) AS k(q)
          JOIN deliveries d ON order_search_key('email', d.email) = order_search_key('email', k.q)
        UNION ALL SELECT k.q, p.order_uid FROM unnest($1::text[]) AS k(q)
          JOIN payments p ON order_search_key('id', p.transaction) = order_search_key('id', k.q)
        UNION ALL SELECT k.q, i.order_uid FROM unnest($1::text[]) AS k(q)
          JOIN items i ON order_search_key('id', i.rid) = order_search_key('id', k.q)`

/**
 * `order_search_matches(qs text[])` replaces `order_search_matches(q text)`: the searches of one
 * statement (up to 32) call it once for all their keys, where they called the old one once each.
 * PostgreSQL spent more per search on starting the function and its seven scans than on the
 * lookups themselves; once per statement, a search costs it about half (see docs/perf-notes/). Same
 * settings as before: one generic plan, and index lookups whatever the data (migration 0005).
 */
export default Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  yield* sql.unsafe(`
    CREATE FUNCTION order_search_matches(qs text[]) RETURNS TABLE (q text, order_uid text)
    LANGUAGE plpgsql STABLE PARALLEL SAFE ROWS 40
    SET plan_cache_mode = force_generic_plan
    SET enable_seqscan = off
    AS $body$
    #variable_conflict use_column
    BEGIN
      RETURN QUERY ${ORDER_SEARCH_MATCHES.replaceAll("$1::text[]", "qs")};
    END
    $body$`)
  yield* sql`DROP FUNCTION order_search_matches(text)`
})
