/**
 * Orders in PostgreSQL. A batch is written set-based in one transaction: each table receives one
 * statement whose rows arrive as a single JSON parameter (`json_to_recordset`), which costs the
 * client linear time however large the batch (pg's array parameters grow faster than that).
 */
import { createHash } from "node:crypto"
import { SqlClient, type Statement } from "@effect/sql"
import { SqlError } from "@effect/sql/SqlError"
import { Effect, Either, Option, Schema } from "effect"
import { PgPool } from "../db/Database.ts"
import { transaction } from "../db/transaction.ts"
import { Order, type OrderJson } from "./Order.ts"
import { orderToJsonString } from "./OrderDecoder.ts"

/** What happened to one order of a batch. */
export type InsertOutcome =
  /** Stored now. */
  | "inserted"
  /** The same order was already stored (a redelivery): nothing written, safe to acknowledge. */
  | "duplicate"
  /** A different order is stored under this `order_uid`: nothing written, the first one stays. */
  | "conflict"

/** A page of recent orders, newest first. */
export interface RecentOrders {
  readonly items: ReadonlyArray<OrderSummary>
  /** Pass to the next call for the following page; absent on the last page. */
  readonly nextCursor: Option.Option<string>
}

export const OrderSummary = Schema.Struct({
  order_uid: Schema.String,
  date_created: Schema.String,
  customer_id: Schema.String,
  amount: Schema.Number,
  currency: Schema.String,
  item_count: Schema.Number
})
export type OrderSummary = typeof OrderSummary.Type

/** An order as stored: its canonical JSON (the bytes served) and that text's SHA-256, base64url. */
export interface StoredJson {
  readonly uid: string
  readonly json: string
  readonly digest: string
}

interface JsonRow {
  readonly document: string | null
  readonly built: string | null
  readonly digest: string
}

/** A stored order together with its canonical JSON text. */
export interface StoredOrder {
  readonly order: Order
  readonly json: string
}

const contentHash = (json: string): string => createHash("sha256").update(json).digest("hex")

interface Prepared {
  readonly order: Order
  readonly encoded: OrderJson
  /** The canonical JSON, stored as `document`. */
  readonly json: string
  readonly hash: string
}

const RECORD_SEPARATOR = "\u001e"

/** Rows per query when reading many orders (cache warm-up): small pages leave less garbage behind. */
const WARM_PAGE = 2_000

/** Cursor = the last row's (created_at, order_uid), opaque to clients. */
const encodeCursor = (createdAt: string, uid: string): string =>
  Buffer.from(JSON.stringify([createdAt, uid])).toString("base64url")

/** `created_at` as text with microseconds, so a cursor round-trips exactly. */
const CREATED_AT_TEXT = `to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`

/** A summary's columns, all of them on `orders o` (migration 0008). */
const SUMMARY_COLUMNS = `o.order_uid, o.date_created, o.customer_id, o.amount, o.currency, o.item_count,
  ${CREATED_AT_TEXT} AS created_at`

/**
 * Searches by `q`, any number in one statement: each row of the arrays is one search (its key,
 * bounds and cursor position, NULL where not given, and its limit). The keys are looked up all at
 * once (`order_search_matches`), and for each search the lateral subquery orders and pages its
 * matches. Batched, a search costs PostgreSQL and the service less than half of what it costs
 * alone: one statement's round trip, executor start and result for many.
 */
const SEARCH_BY_KEYS = `
  WITH m AS MATERIALIZED (SELECT q, order_uid FROM order_search_matches($1::text[]))
  SELECT k.search, s.*
  FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[], $4::timestamptz[], $5::text[], $6::int[])
    WITH ORDINALITY AS k(q, since, until, after_at, after_uid, lim, search)
  CROSS JOIN LATERAL (
    SELECT ${SUMMARY_COLUMNS}
    FROM orders o
    WHERE o.order_uid IN (SELECT m.order_uid FROM m WHERE m.q = k.q)
      AND (k.since IS NULL OR o.created_at >= k.since)
      AND (k.until IS NULL OR o.created_at < k.until)
      AND (k.after_at IS NULL OR (o.created_at, o.order_uid) < (k.after_at, k.after_uid))
    ORDER BY o.created_at DESC, o.order_uid DESC
    LIMIT k.lim) s`

/** An order's row of `orders` as `insertBatch` sends it (as JSON, with the rows of its batch). */
export const headerRowOf = (o: OrderJson, hash: string) => ({
  order_uid: o.order_uid,
  track_number: o.track_number,
  entry: o.entry,
  locale: o.locale,
  internal_signature: o.internal_signature,
  customer_id: o.customer_id,
  delivery_service: o.delivery_service,
  shardkey: o.shardkey,
  sm_id: o.sm_id,
  date_created: o.date_created,
  oof_shard: o.oof_shard,
  amount: o.payment.amount,
  currency: o.payment.currency,
  item_count: o.items.length,
  content_hash: hash
})

const INVALID_CURSOR = "the cursor is not one this service gave out"

const decodeCursor = (cursor: string): Option.Option<readonly [string, string]> => {
  try {
    const value: unknown = JSON.parse(Buffer.from(cursor, "base64url").toString("utf8"))
    if (
      Array.isArray(value) &&
      value.length === 2 &&
      typeof value[0] === "string" &&
      /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/.test(value[0]) &&
      typeof value[1] === "string"
    ) {
      return Option.some([value[0], value[1]] as const)
    }
  } catch {
    // fall through: not a cursor we made
  }
  return Option.none()
}

export class InvalidCursor extends Schema.TaggedError<InvalidCursor>()("InvalidCursor", {
  message: Schema.String
}) {}

/** What a search looks for; every part given must match. */
export interface SearchQuery {
  /** Matched exactly, after `order_search_key` normalises it, against each id a customer may have. */
  readonly q: Option.Option<string>
  /** `date_created` at or after this instant (RFC 3339). */
  readonly from: Option.Option<string>
  /** `date_created` before this instant (RFC 3339). */
  readonly to: Option.Option<string>
  readonly limit: number
  readonly cursor: Option.Option<string>
}

/** The kinds of value a search matches, each by one index (migration 0004). */
export const SearchKinds = [
  "order_uid",
  "track_number",
  "customer_id",
  "phone",
  "email",
  "transaction",
  "rid"
] as const
export type SearchKind = (typeof SearchKinds)[number]

/** The channel a storing transaction notifies with the uids it stored (a JSON array per notification). */
export const ORDERS_STORED_CHANNEL = "orders_stored"

/** PostgreSQL refuses a NOTIFY payload of 8,000 bytes or more; uids are sent in chunks below that. */
const NOTIFY_PAYLOAD_BYTES = 7_000

/** The uids as JSON arrays of at most `NOTIFY_PAYLOAD_BYTES` bytes each. */
export const notifyPayloads = (uids: ReadonlyArray<string>): Array<string> => {
  const payloads: Array<string> = []
  let chunk: Array<string> = []
  let bytes = 2
  for (const uid of uids) {
    const size = Buffer.byteLength(JSON.stringify(uid)) + 1
    if (chunk.length > 0 && bytes + size > NOTIFY_PAYLOAD_BYTES) {
      payloads.push(JSON.stringify(chunk))
      chunk = []
      bytes = 2
    }
    chunk.push(uid)
    bytes += size
  }
  if (chunk.length > 0) payloads.push(JSON.stringify(chunk))
  return payloads
}

/** A stored order's summary with its place in the live feed. */
export interface FeedEntry {
  readonly seq: string
  readonly summary: OrderSummary
}

interface SummaryRow {
  readonly order_uid: string
  readonly date_created: string
  readonly customer_id: string
  readonly amount: string
  readonly currency: string
  readonly item_count: number
  readonly created_at: string
}

const toSummary = (r: SummaryRow): OrderSummary => ({
  order_uid: r.order_uid,
  date_created: r.date_created,
  customer_id: r.customer_id,
  amount: Number(r.amount),
  currency: r.currency,
  item_count: r.item_count
})

/** One page of `rows` (fetched with one extra to tell whether another page follows). */
const pageOf = (rows: ReadonlyArray<SummaryRow>, limit: number): RecentOrders => {
  const page = rows.slice(0, limit)
  const last = page[page.length - 1]
  return {
    items: page.map(toSummary),
    nextCursor:
      rows.length > limit && last ? Option.some(encodeCursor(last.created_at, last.order_uid)) : Option.none()
  }
}

const parseCursor = (cursor: Option.Option<string>) =>
  Option.match(cursor, {
    onNone: () => Effect.succeed(Option.none<readonly [string, string]>()),
    onSome: (c) =>
      Option.match(decodeCursor(c), {
        onNone: () => Effect.fail(new InvalidCursor({ message: INVALID_CURSOR })),
        onSome: (v) => Effect.succeed(Option.some(v))
      })
  })

export class OrderRepository extends Effect.Service<OrderRepository>()("OrderRepository", {
  effect: Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const pool = yield* PgPool

    /** The whole order as JSON built by PostgreSQL, in the model's field order. */
    const orderJsonSelect = sql`
      json_build_object(
        'order_uid', o.order_uid, 'track_number', o.track_number, 'entry', o.entry,
        'delivery', json_build_object(
          'name', d.name, 'phone', d.phone, 'zip', d.zip, 'city', d.city,
          'address', d.address, 'region', d.region, 'email', d.email),
        'payment', json_build_object(
          'transaction', p.transaction, 'request_id', p.request_id, 'currency', p.currency,
          'provider', p.provider, 'amount', p.amount, 'payment_dt', p.payment_dt, 'bank', p.bank,
          'delivery_cost', p.delivery_cost, 'goods_total', p.goods_total, 'custom_fee', p.custom_fee),
        'items', (
          SELECT json_agg(json_build_object(
            'chrt_id', i.chrt_id, 'track_number', i.track_number, 'price', i.price, 'rid', i.rid,
            'name', i.name, 'sale', i.sale, 'size', i.size, 'total_price', i.total_price,
            'nm_id', i.nm_id, 'brand', i.brand, 'status', i.status) ORDER BY i.position)
          FROM items i WHERE i.order_uid = o.order_uid),
        'locale', o.locale, 'internal_signature', o.internal_signature, 'customer_id', o.customer_id,
        'delivery_service', o.delivery_service, 'shardkey', o.shardkey, 'sm_id', o.sm_id,
        'date_created', o.date_created, 'oof_shard', o.oof_shard
      )::text`

    const createdAtText = sql.literal(CREATED_AT_TEXT)

    /** Rows after (older than) the cursor position in newest-first order. */
    const olderThan = ([at, uid]: readonly [string, string]) =>
      sql`(o.created_at, o.order_uid) < (${at}::timestamptz, ${uid})`
    const keysetAfter = (after: Option.Option<readonly [string, string]>) =>
      Option.match(after, { onNone: () => sql``, onSome: (position) => sql`WHERE ${olderThan(position)}` })

    /** Summaries of the orders `where` selects, newest first, one more than a page. */
    const summaryStatement = (where: ReadonlyArray<Statement.Fragment>, limit: number) =>
      sql<SummaryRow>`
        SELECT ${sql.literal(SUMMARY_COLUMNS)}
        FROM orders o
        ${where.length === 0 ? sql`` : sql`WHERE ${sql.and(where)}`}
        ORDER BY o.created_at DESC, o.order_uid DESC
        LIMIT ${limit + 1}`

    const insertParts = (orders: ReadonlyArray<Prepared>) =>
      Effect.gen(function* () {
        const deliveries = orders.map(({ encoded: o }) => ({ order_uid: o.order_uid, ...o.delivery }))
        const payments = orders.map(({ encoded: o }) => ({ order_uid: o.order_uid, ...o.payment }))
        const items = orders.flatMap(({ encoded: o }) =>
          o.items.map((item, position) => ({ order_uid: o.order_uid, position, ...item }))
        )
        yield* sql`
          INSERT INTO deliveries (order_uid, name, phone, zip, city, address, region, email)
          SELECT order_uid, name, phone, zip, city, address, region, email
          FROM json_to_recordset(${JSON.stringify(deliveries)}::json) AS x(
            order_uid text, name text, phone text, zip text, city text, address text, region text, email text)`
        yield* sql`
          INSERT INTO payments (order_uid, transaction, request_id, currency, provider, amount, payment_dt,
                                bank, delivery_cost, goods_total, custom_fee)
          SELECT order_uid, transaction, request_id, currency, provider, amount, payment_dt,
                 bank, delivery_cost, goods_total, custom_fee
          FROM json_to_recordset(${JSON.stringify(payments)}::json) AS x(
            order_uid text, transaction text, request_id text, currency text, provider text, amount bigint,
            payment_dt bigint, bank text, delivery_cost bigint, goods_total bigint, custom_fee bigint)`
        yield* sql`
          INSERT INTO items (order_uid, position, chrt_id, track_number, price, rid, name, sale, size,
                             total_price, nm_id, brand, status)
          SELECT order_uid, position, chrt_id, track_number, price, rid, name, sale, size,
                 total_price, nm_id, brand, status
          FROM json_to_recordset(${JSON.stringify(items)}::json) AS x(
            order_uid text, position integer, chrt_id bigint, track_number text, price bigint, rid text,
            name text, sale integer, size text, total_price bigint, nm_id bigint, brand text, status bigint)`
      })

    /**
     * Store a batch in one transaction. Outcomes come back in the order of the input. Within a
     * batch the first order under a uid wins, exactly as if they had arrived in separate batches.
     */
    const insertBatch = Effect.fn("OrderRepository.insertBatch")(function* (orders: ReadonlyArray<Order>) {
      const prepared = orders.map((order): Prepared => {
        const json = orderToJsonString(order)
        return { order, encoded: order, json, hash: contentHash(json) }
      })
      // The first order under each uid is the one we try to store.
      const candidates = [
        ...new Map(prepared.toReversed().map((p) => [p.order.order_uid, p])).values()
      ].toReversed()
      if (candidates.length === 0) return []

      const { insertedUids, storedHash } = yield* transaction(sql)(
        Effect.gen(function* () {
          const headers = candidates.map(({ encoded, hash }) => headerRowOf(encoded, hash))
          // The documents travel beside the JSON rows, joined by a character that JSON text never
          // holds unescaped (RS, U+001E): PostgreSQL splits them without parsing them again.
          const documents = candidates.map((c) => c.json).join(RECORD_SEPARATOR)
          const inserted = yield* sql<{ order_uid: string }>`
            INSERT INTO orders (order_uid, track_number, entry, locale, internal_signature, customer_id,
                                delivery_service, shardkey, sm_id, date_created, created_at, oof_shard, amount,
                                currency, item_count, content_hash, document)
            SELECT order_uid, track_number, entry, locale, internal_signature, customer_id,
                   delivery_service, shardkey, sm_id, date_created, date_created::timestamptz, oof_shard, amount,
                   currency, item_count, decode(content_hash, 'hex'), document
            FROM ROWS FROM (
              json_to_recordset(${JSON.stringify(headers)}::json) AS (
                order_uid text, track_number text, entry text, locale text, internal_signature text,
                customer_id text, delivery_service text, shardkey text, sm_id bigint, date_created text,
                oof_shard text, amount bigint, currency text, item_count integer, content_hash text),
              unnest(string_to_array(${documents}::text, chr(30)))
            ) AS x(order_uid, track_number, entry, locale, internal_signature, customer_id, delivery_service,
                   shardkey, sm_id, date_created, oof_shard, amount, currency, item_count, content_hash, document)
            ON CONFLICT (order_uid) DO NOTHING
            RETURNING order_uid`
          const insertedUids = new Set(inserted.map((r) => r.order_uid))
          const fresh = candidates.filter((c) => insertedUids.has(c.order.order_uid))
          if (fresh.length > 0) {
            yield* insertParts(fresh)
            // Delivered at commit, in commit order, to every instance listening (the live feed).
            yield* sql`
              SELECT pg_notify(${ORDERS_STORED_CHANNEL}, payload)
              FROM unnest(${notifyPayloads(fresh.map((c) => c.order.order_uid))}::text[]) AS payload`
          }
          const storedHash = new Map(fresh.map((c) => [c.order.order_uid, c.hash]))
          const existing = candidates.filter((c) => !insertedUids.has(c.order.order_uid))
          if (existing.length > 0) {
            const stored = yield* sql<{ order_uid: string; content_hash: string }>`
              SELECT order_uid, encode(content_hash, 'hex') AS content_hash FROM orders
              WHERE order_uid IN (SELECT json_array_elements_text(${JSON.stringify(existing.map((c) => c.order.order_uid))}::json))`
            for (const r of stored) storedHash.set(r.order_uid, r.content_hash)
          }
          return { insertedUids, storedHash }
        })
      )

      // Each order is judged against what is stored now, as if it had arrived on its own.
      const claimed = new Set<string>()
      return prepared.map(({ order, hash }): InsertOutcome => {
        const uid = order.order_uid
        if (insertedUids.has(uid) && !claimed.has(uid)) {
          claimed.add(uid)
          return "inserted"
        }
        return storedHash.get(uid) === hash ? "duplicate" : "conflict"
      })
    })

    /**
     * The stored document, or — for a row stored before documents were — the order built from
     * its tables by PostgreSQL (`built`, to be re-serialised canonically).
     */
    const documentOrBuilt = sql`
      o.document,
      CASE WHEN o.document IS NULL THEN (
        SELECT ${orderJsonSelect}
        FROM deliveries d JOIN payments p USING (order_uid)
        WHERE d.order_uid = o.order_uid
      ) END AS built`

    const storedJson = (uid: string, row: JsonRow): StoredJson => ({
      uid,
      json: row.document ?? JSON.stringify(JSON.parse(row.built!)),
      digest: row.digest
    })

    /** `content_hash` (SHA-256 of the canonical JSON) in base64url: what the order's ETag is made of. */
    const digest = sql`translate(encode(o.content_hash, 'base64'), '+/=', '-_') AS digest`

    // Cache misses are read by primary key, a batch of them in one statement (`Orders`), run as a
    // named prepared statement straight on the pool: PostgreSQL parses and plans it once per
    // connection, and the read skips the SqlClient's per-statement work. Like every read for a
    // client, with the clients' statement timeout (`clientQuery`, see TimedPool).
    const [findText] =
      sql`SELECT o.order_uid, ${documentOrBuilt}, ${digest} FROM orders o WHERE o.order_uid = ANY(${""}::text[])`.compile()

    /**
     * The orders' canonical JSON, as served, with their digests, by uid; a uid not stored is not in
     * the map. No decoding: they were checked on the way in.
     */
    const findJsonByUids = (
      uids: ReadonlyArray<string>
    ): Effect.Effect<ReadonlyMap<string, StoredJson>, SqlError> =>
      Effect.async((resume) => {
        pool.clientQuery<JsonRow & { readonly order_uid: string }>(
          { name: "orders-by-uid", text: findText, values: [uids] },
          (cause, result) => {
            if (cause) resume(Effect.fail(new SqlError({ cause, message: "Failed to execute statement" })))
            else
              resume(
                Effect.succeed(
                  new Map(result!.rows.map((row) => [row.order_uid, storedJson(row.order_uid, row)]))
                )
              )
          }
        )
      })

    /**
     * The `limit` most recent orders (by `date_created`) as canonical JSON, oldest first, e.g. to
     * warm a cache. Read in pages, and not decoded: they were checked on the way in.
     */
    const mostRecentJson = Effect.fn("OrderRepository.mostRecentJson")(function* (
      limit: number,
      pageSize: number = WARM_PAGE
    ) {
      const newestFirst: Array<StoredJson> = []
      let after = Option.none<readonly [string, string]>()
      while (newestFirst.length < limit) {
        const page = Math.min(pageSize, limit - newestFirst.length)
        const rows = yield* sql<JsonRow & { order_uid: string; created_at: string }>`
          SELECT o.order_uid, ${createdAtText} AS created_at, ${documentOrBuilt}, ${digest}
          FROM orders o
          ${keysetAfter(after)}
          ORDER BY o.created_at DESC, o.order_uid DESC LIMIT ${page}`
        for (const r of rows) newestFirst.push(storedJson(r.order_uid, r))
        const last = rows[rows.length - 1]
        if (rows.length < page || last === undefined) break
        after = Option.some([last.created_at, last.order_uid] as const)
      }
      return newestFirst.reverse()
    })

    const listRecent = Effect.fn("OrderRepository.listRecent")(function* (
      limit: number,
      cursor: Option.Option<string>
    ) {
      const after = yield* parseCursor(cursor)
      const rows = yield* summaryStatement(Option.toArray(Option.map(after, olderThan)), limit)
      return pageOf(rows, limit)
    })

    /** The statement of a search without `q` (a date range), its cursor already decoded. */
    const rangeStatement = (query: SearchQuery, after: Option.Option<readonly [string, string]>) =>
      summaryStatement(
        [
          ...Option.toArray(Option.map(query.from, (from) => sql`o.created_at >= ${from}::timestamptz`)),
          ...Option.toArray(Option.map(query.to, (to) => sql`o.created_at < ${to}::timestamptz`)),
          ...Option.toArray(Option.map(after, olderThan))
        ],
        query.limit
      )

    /** The values of `SEARCH_BY_KEYS` for searches by `q`, their cursors already decoded. */
    const byKeysValues = (
      searches: ReadonlyArray<{
        readonly query: SearchQuery
        readonly after: Option.Option<readonly [string, string]>
      }>
    ) => [
      searches.map(({ query }) => Option.getOrNull(query.q)),
      searches.map(({ query }) => Option.getOrNull(query.from)),
      searches.map(({ query }) => Option.getOrNull(query.to)),
      searches.map(({ after }) => (Option.isSome(after) ? after.value[0] : null)),
      searches.map(({ after }) => (Option.isSome(after) ? after.value[1] : null)),
      // One more than a page, to tell whether another follows.
      searches.map(({ query }) => query.limit + 1)
    ]

    /**
     * The statement a search runs for `query` (tests EXPLAIN it): `SEARCH_BY_KEYS` when it has a
     * `q` (as `searchByKeys` runs it), else the range statement of `searchByDates`.
     */
    const searchStatement = (query: SearchQuery) =>
      Effect.map(parseCursor(query.cursor), (after) =>
        Option.isSome(query.q)
          ? sql.unsafe<SummaryRow>(SEARCH_BY_KEYS, byKeysValues([{ query, after }]))
          : rangeStatement(query, after)
      )

    /**
     * Preparing a search costs PostgreSQL more than running it, so each shape of a range search
     * (which of from, to and cursor it has: at most 8) is a named prepared statement, parsed once
     * per connection. Its name is the text's digest, worked out once.
     */
    const statementNames = new Map<string, string>()
    const statementName = (text: string) => {
      let name = statementNames.get(text)
      if (name === undefined) {
        name = `order-search-${createHash("sha1").update(text).digest("hex").slice(0, 16)}`
        if (statementNames.size < 64) statementNames.set(text, name)
      }
      return name
    }

    const failedStatement = (cause: unknown) =>
      new SqlError({ cause, message: "Failed to execute statement" })

    /**
     * Orders created in `query`'s date range (it has no `q`), newest first, a page at a time (the
     * same cursors as `listRecent`).
     */
    const searchByDates = (query: SearchQuery): Effect.Effect<RecentOrders, InvalidCursor | SqlError> =>
      Effect.flatMap(parseCursor(query.cursor), (after) =>
        Effect.async((resume) => {
          const [text, values] = rangeStatement(query, after).compile()
          pool.clientQuery<SummaryRow>(
            { name: statementName(text), text, values: [...values] },
            (cause, result) =>
              resume(
                cause
                  ? Effect.fail(failedStatement(cause))
                  : Effect.succeed(pageOf(result!.rows, query.limit))
              )
          )
        })
      )

    /**
     * Searches that each have a `q`, in one statement (`SEARCH_BY_KEYS`): each search's page, or
     * why its cursor was refused, in the order given.
     */
    const searchByKeys = (
      queries: ReadonlyArray<SearchQuery>
    ): Effect.Effect<ReadonlyArray<Either.Either<RecentOrders, InvalidCursor>>, SqlError> =>
      Effect.async((resume) => {
        const results = new Array<Either.Either<RecentOrders, InvalidCursor>>(queries.length)
        const searches: Array<{
          query: SearchQuery
          after: Option.Option<readonly [string, string]>
          at: number
        }> = []
        queries.forEach((query, at) => {
          const after = Option.flatMap(query.cursor, decodeCursor)
          if (Option.isNone(query.cursor) || Option.isSome(after)) searches.push({ query, after, at })
          else results[at] = Either.left(new InvalidCursor({ message: INVALID_CURSOR }))
        })
        if (searches.length === 0) return resume(Effect.succeed(results))
        pool.clientQuery<SummaryRow & { readonly search: string }>(
          { name: "order-search-by-keys", text: SEARCH_BY_KEYS, values: byKeysValues(searches) },
          (cause, result) => {
            if (cause || result === undefined) return resume(Effect.fail(failedStatement(cause)))
            // Rows come grouped by search, in the order of the arrays (1-based).
            const rows: Array<Array<SummaryRow>> = searches.map(() => [])
            for (const row of result.rows) rows[Number(row.search) - 1]!.push(row)
            searches.forEach(
              ({ query, at }, i) => (results[at] = Either.right(pageOf(rows[i]!, query.limit)))
            )
            resume(Effect.succeed(results))
          }
        )
      })

    /** Summaries of the given orders with their feed sequence numbers, in the order they were stored. */
    const feedEntries = Effect.fn("OrderRepository.feedEntries")(function* (uids: ReadonlyArray<string>) {
      const rows = yield* sql<SummaryRow & { readonly feed_seq: string }>`
        SELECT ${sql.literal(SUMMARY_COLUMNS)}, o.feed_seq
        FROM orders o
        WHERE o.order_uid IN (SELECT json_array_elements_text(${JSON.stringify(uids)}::json))
          AND o.feed_seq IS NOT NULL
        ORDER BY o.feed_seq`
      return rows.map((r): FeedEntry => ({ seq: r.feed_seq, summary: toSummary(r) }))
    })

    /** Cheap round trip for readiness checks. */
    const ping: Effect.Effect<void, SqlError> = sql`SELECT 1`.pipe(Effect.asVoid)

    return {
      insertBatch,
      findJsonByUids,
      mostRecentJson,
      listRecent,
      searchByKeys,
      searchByDates,
      searchStatement,
      feedEntries,
      ping
    } as const
  })
}) {}
