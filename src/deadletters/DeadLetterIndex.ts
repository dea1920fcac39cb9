/**
 * The dead-letter topic's index in PostgreSQL (table `dead_letters`): what `/dead-letters` lists,
 * shows and replays, so that none of it reads the topic. The topic stays the record: rows are
 * written from what a read_committed reader of the topic sees (src/deadletters/DeadLetterIndexer.ts),
 * idempotently by (partition, offset), and the table can always be rebuilt from the topic.
 */
import { isUtf8 } from "node:buffer"
import { SqlClient } from "@effect/sql"
import { Duration, Effect, Option, Schema } from "effect"
import type { IHeaders, KafkaMessage } from "kafkajs"
import { DeadLetterHeaders, ReplayHeaders } from "../kafka/DeadLetters.ts"

/** Bytes as text when they are UTF-8, else as base64. */
export const EncodedBytes = Schema.Struct({
  encoding: Schema.Literal("utf8", "base64"),
  data: Schema.String
}).annotations({ identifier: "EncodedBytes" })
export type EncodedBytes = typeof EncodedBytes.Type

export const encodeBytes = (bytes: Uint8Array): EncodedBytes =>
  isUtf8(bytes)
    ? { encoding: "utf8", data: Buffer.from(bytes).toString("utf8") }
    : { encoding: "base64", data: Buffer.from(bytes).toString("base64") }

/** Where a message is on a topic. */
export const TopicPosition = Schema.Struct({
  topic: Schema.String,
  partition: Schema.Number,
  offset: Schema.String
}).annotations({ identifier: "TopicPosition" })
export type TopicPosition = typeof TopicPosition.Type

export const DeadLetterSummary = Schema.Struct({
  partition: Schema.Number.annotations({ description: "The letter's partition on the dead-letter topic" }),
  offset: Schema.String.annotations({ description: "The letter's offset on the dead-letter topic" }),
  kind: Schema.String.annotations({
    description: "invalid_json, schema, business_rule, too_large, conflict or unprocessable"
  }),
  detail: Schema.String,
  source: Schema.NullOr(TopicPosition).annotations({ description: "Where the message was consumed" }),
  key: Schema.NullOr(EncodedBytes),
  failed_at: Schema.String.annotations({ description: "When it was parked (ISO 8601, UTC)" }),
  size: Schema.Number.annotations({ description: "Bytes of the original value" }),
  order_uid: Schema.NullOr(Schema.String).annotations({
    description: "For a conflict: the id of the stored order it conflicts with"
  }),
  replay_of: Schema.NullOr(TopicPosition).annotations({
    description: "Parked again after a replay: the dead letter it was a copy of"
  })
}).annotations({ identifier: "DeadLetterSummary" })
export type DeadLetterSummary = typeof DeadLetterSummary.Type

export const DeadLetterHeader = Schema.Struct({ name: Schema.String, value: EncodedBytes })

export const DeadLetterDetail = Schema.Struct({
  ...DeadLetterSummary.fields,
  value: Schema.NullOr(EncodedBytes).annotations({ description: "The original message's bytes" }),
  headers: Schema.Array(DeadLetterHeader).annotations({
    description: "Every header of the letter: the original message's and the dlq.* ones"
  })
}).annotations({ identifier: "DeadLetterDetail" })
export type DeadLetterDetail = typeof DeadLetterDetail.Type

/** A letter as read from the topic, ready to index. */
export interface IndexedLetter {
  readonly partition: number
  readonly offset: string
  readonly kind: string
  readonly detail: string
  readonly failedAt: Date
  readonly source: TopicPosition | null
  readonly key: Buffer | null
  readonly value: Buffer | null
  readonly headers: ReadonlyArray<{ readonly name: string; readonly value: Buffer }>
  readonly orderUid: string | null
  readonly replayOf: string | null
}

/** A letter with its bytes, to replay. */
export interface StoredLetter {
  readonly partition: number
  readonly offset: string
  readonly kind: string
  readonly key: Buffer | null
  readonly value: Buffer | null
  readonly headers: ReadonlyArray<{ readonly name: string; readonly value: Buffer }>
}

/** PostgreSQL text cannot hold NUL: such a character is kept as U+FFFD. */
const pgText = (text: string) => text.replaceAll("\u0000", "\uFFFD")

const flattenHeaders = (headers: IHeaders | undefined) =>
  Object.entries(headers ?? {}).flatMap(([name, value]) =>
    (Array.isArray(value) ? value : value === undefined ? [] : [value]).map((v) => ({
      name,
      value: Buffer.isBuffer(v) ? v : Buffer.from(String(v))
    }))
  )

/** Whether `text` is an offset a Kafka log can have: a whole number that fits in a signed 64-bit integer. */
export const isOffset = (text: string) => /^\d{1,19}$/.test(text) && BigInt(text) <= 0x7fffffffffffffffn

const POSITION = /^(.+)\/(\d+)\/(\d+)$/

/** `topic/partition/offset`, as `replay.of` holds it. */
export const formatPosition = (p: TopicPosition) => `${p.topic}/${p.partition}/${p.offset}`

export const parsePosition = (text: string | null): TopicPosition | null => {
  const match = text === null ? null : POSITION.exec(text)
  return match === null ? null : { topic: match[1]!, partition: Number(match[2]), offset: match[3]! }
}

/** The `order_uid` of a conflicting order: it decoded as an order, so its JSON names one. */
const orderUidOf = (value: Buffer | null): string | null => {
  try {
    const uid: unknown = value === null ? undefined : JSON.parse(value.toString("utf8"))?.order_uid
    return typeof uid === "string" ? uid : null
  } catch {
    return null
  }
}

/** What to index of a record of the dead-letter topic; the last header of a name wins. */
export const letterFromMessage = (partition: number, message: KafkaMessage): IndexedLetter => {
  const headers = flattenHeaders(message.headers)
  const text = (name: string) => headers.findLast((h) => h.name === name)?.value.toString("utf8") ?? null
  const kind = text(DeadLetterHeaders.kind) ?? "unknown"
  const failedAt = new Date(text(DeadLetterHeaders.failedAt) ?? Number(message.timestamp))
  const sourceTopic = text(DeadLetterHeaders.topic)
  const sourcePartition = Number(text(DeadLetterHeaders.partition))
  const sourceOffset = text(DeadLetterHeaders.offset)
  const value = message.value ?? null
  return {
    partition,
    offset: message.offset,
    kind: pgText(kind),
    detail: pgText(text(DeadLetterHeaders.detail) ?? ""),
    failedAt: Number.isNaN(failedAt.getTime()) ? new Date(Number(message.timestamp)) : failedAt,
    source:
      sourceTopic !== null &&
      Number.isInteger(sourcePartition) &&
      sourceOffset !== null &&
      /^\d+$/.test(sourceOffset)
        ? { topic: pgText(sourceTopic), partition: sourcePartition, offset: sourceOffset }
        : null,
    key: message.key ?? null,
    value,
    headers: headers.map((h) => ({ name: pgText(h.name), value: h.value })),
    orderUid: kind === "conflict" ? pgText(orderUidOf(value) ?? "") || null : null,
    replayOf: parsePosition(text(ReplayHeaders.of)) === null ? null : pgText(text(ReplayHeaders.of)!)
  }
}

/** Which letters: by kind and by when they were parked (`since` inclusive, `until` exclusive). */
export interface LetterFilter {
  readonly kind?: string | undefined
  readonly since?: Date | undefined
  readonly until?: Date | undefined
}

/** Letters to replay: a filter, or one letter by its place on the topic. */
export type Selection =
  | ({ readonly _tag: "Filter" } & LetterFilter)
  | { readonly _tag: "One"; readonly partition: number; readonly offset: string }

export interface LetterPage<A> {
  readonly items: ReadonlyArray<A>
  readonly nextCursor: Option.Option<string>
}

/** How a replay takes a page of its selection. */
export interface ReplayPageOptions {
  /** Letters at most. */
  readonly limit: number
  /**
   * Bytes at most (each letter's value, key and headers): the page ends before the letter that
   * would take it past this, and always holds at least one.
   */
  readonly maxBytes: number
  /** Take letters replayed before too; by default only those never replayed. */
  readonly includeReplayed: boolean
  readonly cursor: Option.Option<string>
}

/** A letter a replay page takes, without its bytes. */
export interface LetterRef {
  readonly partition: number
  readonly offset: string
  readonly kind: string
  readonly key: Buffer | null
}

export interface ReplayPage {
  readonly letters: ReadonlyArray<LetterRef>
  readonly nextCursor: Option.Option<string>
  /** A filter's end (exclusive), fixed by its first page and kept by the cursor; none for one letter. */
  readonly until: Option.Option<Date>
}

/** Letters a replay holds for sending, until it settles them with `token`. */
export interface ClaimedLetters {
  readonly letters: ReadonlyArray<StoredLetter>
  readonly token: string
}

/** How many letters a selection takes in: those never replayed, and those replayed before. */
export interface SelectionCount {
  readonly notReplayed: number
  readonly replayed: number
}

/**
 * A cursor is the last row's (failed_at, partition, offset), opaque to clients. A replay's cursor
 * holds the `until` its first page fixed as well, so that its later pages keep to it.
 */
type Position = readonly [failedAt: string, partition: number, offset: string]
type ReplayPosition = readonly [failedAt: string, partition: number, offset: string, until: string]

const encodeCursor = (p: Position | ReplayPosition) => Buffer.from(JSON.stringify(p)).toString("base64url")

const TIMESTAMP = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/
const ISO_INSTANT = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/

const decodeCursor = (cursor: string, length: 3 | 4): Option.Option<ReadonlyArray<unknown>> => {
  try {
    const v: unknown = JSON.parse(Buffer.from(cursor, "base64url").toString("utf8"))
    if (
      Array.isArray(v) &&
      v.length === length &&
      typeof v[0] === "string" &&
      TIMESTAMP.test(v[0]) &&
      Number.isSafeInteger(v[1]) &&
      typeof v[2] === "string" &&
      isOffset(v[2]) &&
      (length === 3 ||
        (typeof v[3] === "string" && ISO_INSTANT.test(v[3]) && !Number.isNaN(Date.parse(v[3]))))
    )
      return Option.some(v)
  } catch {
    // not a cursor we made
  }
  return Option.none()
}

export class InvalidLetterCursor extends Schema.TaggedError<InvalidLetterCursor>()("InvalidLetterCursor", {
  message: Schema.String
}) {}

interface SummaryRow {
  readonly partition: number
  readonly offset: string
  readonly kind: string
  readonly detail: string
  readonly failed_at: string
  readonly source_topic: string | null
  readonly source_partition: number | null
  readonly source_offset: string | null
  readonly key: Buffer | null
  readonly size: number
  readonly order_uid: string | null
  readonly replay_of: string | null
}

interface HeaderJson {
  readonly name: string
  readonly value: string
}

const summaryOf = (row: SummaryRow): DeadLetterSummary => ({
  partition: row.partition,
  offset: row.offset,
  kind: row.kind,
  detail: row.detail,
  source:
    row.source_topic !== null && row.source_partition !== null && row.source_offset !== null
      ? { topic: row.source_topic, partition: row.source_partition, offset: row.source_offset }
      : null,
  key: row.key === null ? null : encodeBytes(row.key),
  failed_at: row.failed_at,
  size: row.size,
  order_uid: row.order_uid,
  replay_of: parsePosition(row.replay_of)
})

const headersOf = (json: ReadonlyArray<HeaderJson>) =>
  json.map((h) => ({ name: h.name, value: Buffer.from(h.value, "base64") }))

/**
 * Where a kind's count over a time range stops (`GET /dead-letters?since=…`): such a count is read
 * from `dead_letters_kind_idx` (kind, failed_at), one range scan per kind that ends after
 * `COUNTS_CAP + 1` entries, so a page of letters costs at most that many index entries per kind
 * (about 7 kinds), however many letters the range holds — rather than a count of the whole
 * table on every call (`since=1970-01-01`). The subquery is ordered as the index is: without
 * that, the planner may take a sequential scan that stops after the cap for a common kind but
 * reads the whole table for a rare one (seen on 10,000 letters; the test EXPLAINs it). Capped rather than cached: a cache keyed by the range
 * would still count in full every range not seen before (any `since` is a new one, and `until`
 * left out moves with the clock), and be stale; rather than estimated (the planner's statistics):
 * the small counts an operator reads most ("how many failed in the last hour") stay exact, and
 * only a count past the cap is a lower bound, said so (`counts_capped`, "10,000+" on the page).
 */
export const COUNTS_CAP = 10_000

/** Letters by kind; `capped`: a count stopped at `COUNTS_CAP`, and means that many or more. */
export interface LetterCounts {
  readonly counts: Readonly<Record<string, number>>
  readonly capped: boolean
}

/**
 * Rows one prune statement deletes at most: each statement is its own transaction, so a first
 * prune of a large backlog holds no lock for long. Measured on the embedded PostgreSQL with 400,000
 * letters of 1 KB: 200,000 expired ones went in 41 statements of about 110 ms each (4.5 s in all),
 * found by a range scan of `dead_letters_recent_idx`.
 */
export const PRUNE_CHUNK = 5_000

export class DeadLetterIndex extends Effect.Service<DeadLetterIndex>()("DeadLetterIndex", {
  effect: Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient

    const failedAtText = sql`to_char(failed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`
    const summaryColumns = sql`
      partition, "offset"::text AS "offset", kind, detail, ${failedAtText} AS failed_at, source_topic,
      source_partition, source_offset::text AS source_offset, key, size, order_uid, replay_of`

    const filterClauses = (filter: LetterFilter) => [
      ...(filter.kind === undefined ? [] : [sql`kind = ${filter.kind}`]),
      ...(filter.since === undefined ? [] : [sql`failed_at >= ${filter.since.toISOString()}::timestamptz`]),
      ...(filter.until === undefined ? [] : [sql`failed_at < ${filter.until.toISOString()}::timestamptz`])
    ]

    const selectionClauses = (selection: Selection) =>
      selection._tag === "One"
        ? [sql`partition = ${selection.partition}`, sql`"offset" = ${selection.offset}::bigint`]
        : filterClauses(selection)

    const decodeOrFail = <P>(cursor: Option.Option<string>, length: 3 | 4) =>
      Option.match(cursor, {
        onNone: () => Effect.succeed(Option.none<P>()),
        onSome: (c) =>
          Option.match(decodeCursor(c, length), {
            onNone: () =>
              Effect.fail(
                new InvalidLetterCursor({ message: "the cursor is not one this service gave out" })
              ),
            onSome: (p) => Effect.succeed(Option.some(p as P))
          })
      })
    const cursorOf = (cursor: Option.Option<string>) => decodeOrFail<Position>(cursor, 3)
    const replayCursorOf = (cursor: Option.Option<string>) => decodeOrFail<ReplayPosition>(cursor, 4)

    /**
     * Letters a replay may take now: not held by another replay that is sending them (or whose
     * hold has run out: its process died), and — unless `includeReplayed` — never replayed.
     */
    const claimable = (includeReplayed: boolean) =>
      includeReplayed
        ? sql`(replay_claimed_until IS NULL OR replay_claimed_until < now())`
        : sql`replayed_at IS NULL AND (replay_claimed_until IS NULL OR replay_claimed_until < now())`

    const pageOf = <R extends { failed_at: string; partition: number; offset: string }, A>(
      rows: ReadonlyArray<R>,
      limit: number,
      f: (row: R) => A
    ): LetterPage<A> => {
      const page = rows.slice(0, limit)
      const last = page.at(-1)
      return {
        items: page.map(f),
        nextCursor:
          rows.length > limit && last !== undefined
            ? Option.some(encodeCursor([last.failed_at, last.partition, last.offset]))
            : Option.none()
      }
    }

    /** Index letters read from the topic; a letter indexed before is left as it is. */
    const upsert = Effect.fn("DeadLetterIndex.upsert")(function* (letters: ReadonlyArray<IndexedLetter>) {
      if (letters.length === 0) return
      const rows = letters.map((l) => ({
        partition: l.partition,
        offset: l.offset,
        kind: l.kind,
        detail: l.detail,
        failed_at: l.failedAt.toISOString(),
        source_topic: l.source?.topic ?? null,
        source_partition: l.source?.partition ?? null,
        source_offset: l.source?.offset ?? null,
        key: l.key?.toString("base64") ?? null,
        value: l.value?.toString("base64") ?? null,
        size: l.value?.byteLength ?? 0,
        headers: l.headers.map((h) => ({ name: h.name, value: h.value.toString("base64") })),
        order_uid: l.orderUid,
        replay_of: l.replayOf
      }))
      // One statement: the rows and the counts of the rows it actually inserted move together.
      yield* sql`
        WITH incoming AS (
          SELECT * FROM json_to_recordset(${JSON.stringify(rows)}::json) AS x(
            partition integer, "offset" bigint, kind text, detail text, failed_at timestamptz,
            source_topic text, source_partition integer, source_offset bigint, key text, value text,
            size integer, headers jsonb, order_uid text, replay_of text)
        ), inserted AS (
          INSERT INTO dead_letters (partition, "offset", kind, detail, failed_at, source_topic,
                                    source_partition, source_offset, key, value, size, headers,
                                    order_uid, replay_of)
          SELECT partition, "offset", kind, detail, failed_at, source_topic, source_partition,
                 source_offset, decode(key, 'base64'), decode(value, 'base64'), size, headers,
                 order_uid, replay_of
          FROM incoming
          ON CONFLICT (partition, "offset") DO NOTHING
          RETURNING kind
        )
        INSERT INTO dead_letter_kinds (kind, count)
        SELECT kind, count(*) FROM inserted GROUP BY kind ORDER BY kind
        ON CONFLICT (kind) DO UPDATE SET count = dead_letter_kinds.count + excluded.count`
    })

    /** Where to go on reading each partition: one past the last offset indexed, if any. */
    const nextOffset = Effect.fn("DeadLetterIndex.nextOffset")(function* (partition: number) {
      const rows = yield* sql<{ next: string | null }>`
        SELECT (max("offset") + 1)::text AS next FROM dead_letters WHERE partition = ${partition}`
      return Option.fromNullable(rows[0]?.next ?? null)
    })

    /** A page of letters, newest first. */
    const list = Effect.fn("DeadLetterIndex.list")(function* (
      filter: LetterFilter,
      limit: number,
      cursor: Option.Option<string>
    ) {
      const after = yield* cursorOf(cursor)
      const clauses = [
        ...filterClauses(filter),
        ...Option.match(after, {
          onNone: () => [],
          onSome: ([at, partition, offset]) => [
            sql`(failed_at, partition, "offset") < (${at}::timestamptz, ${partition}, ${offset}::bigint)`
          ]
        })
      ]
      const rows = yield* sql<SummaryRow>`
        SELECT ${summaryColumns} FROM dead_letters
        WHERE ${sql.and(clauses)}
        ORDER BY failed_at DESC, partition DESC, "offset" DESC
        LIMIT ${limit + 1}`
      return pageOf(rows, limit, summaryOf)
    })

    /**
     * Letters by kind. Over all time they come from `dead_letter_kinds`, one row per kind, exact.
     * Over a time range each kind's rows are counted up to `COUNTS_CAP`, and `capped` says whether
     * one of them reached it (see `COUNTS_CAP`). The statement is apart so tests can EXPLAIN it.
     */
    const countsStatement = (filter: Omit<LetterFilter, "kind">) =>
      filter.since === undefined && filter.until === undefined
        ? sql<{ kind: string; count: string }>`SELECT kind, count::text FROM dead_letter_kinds`
        : sql<{ kind: string; count: string }>`
            SELECT k.kind, (
              SELECT count(*) FROM (
                SELECT 1 FROM dead_letters d
                WHERE d.kind = k.kind AND ${sql.and(filterClauses(filter))}
                ORDER BY d.kind, d.failed_at DESC
                LIMIT ${COUNTS_CAP + 1}
              ) AS upto
            )::text AS count
            FROM dead_letter_kinds k`

    const counts = Effect.fn("DeadLetterIndex.counts")(function* (filter: Omit<LetterFilter, "kind">) {
      const allTime = filter.since === undefined && filter.until === undefined
      const rows = yield* countsStatement(filter)
      const found = rows.filter((r) => r.count !== "0").map((r) => [r.kind, Number(r.count)] as const)
      if (allTime) return { counts: Object.fromEntries(found), capped: false } satisfies LetterCounts
      return {
        counts: Object.fromEntries(found.map(([kind, n]) => [kind, Math.min(n, COUNTS_CAP)])),
        capped: found.some(([, n]) => n > COUNTS_CAP)
      } satisfies LetterCounts
    })

    /** One letter with its bytes and headers. */
    const get = Effect.fn("DeadLetterIndex.get")(function* (partition: number, offset: string) {
      const rows = yield* sql<SummaryRow & { value: Buffer | null; headers: ReadonlyArray<HeaderJson> }>`
        SELECT ${summaryColumns}, value, headers FROM dead_letters
        WHERE partition = ${partition} AND "offset" = ${offset}::bigint`
      return Option.map(Option.fromNullable(rows[0]), (row): DeadLetterDetail => ({
        ...summaryOf(row),
        value: row.value === null ? null : encodeBytes(row.value),
        headers: headersOf(row.headers).map((h) => ({ name: h.name, value: encodeBytes(h.value) }))
      }))
    })

    /** How many letters `selection` takes in, replayed before or not. */
    const count = Effect.fn("DeadLetterIndex.count")(function* (selection: Selection) {
      const rows = yield* sql<{ not_replayed: string; replayed: string }>`
        SELECT count(*) FILTER (WHERE replayed_at IS NULL)::text AS not_replayed,
               count(*) FILTER (WHERE replayed_at IS NOT NULL)::text AS replayed
        FROM dead_letters WHERE ${sql.and(selectionClauses(selection))}`
      return {
        notReplayed: Number(rows[0]?.not_replayed ?? 0),
        replayed: Number(rows[0]?.replayed ?? 0)
      } satisfies SelectionCount
    })

    /**
     * A replay's page of `selection`, oldest first (the order they were parked in), without their
     * bytes: at most `limit` letters and `maxBytes` bytes. A filter's first page fixes its `until`
     * (the one given, else `now`) and its cursor carries it, so that following `next_cursor` ends,
     * and never reaches letters parked after the run began — its own replays parked again among
     * them.
     */
    const select = Effect.fn("DeadLetterIndex.select")(function* (
      selection: Selection,
      options: ReplayPageOptions,
      now: Date
    ) {
      const after = yield* replayCursorOf(options.cursor)
      const until =
        selection._tag === "One"
          ? Option.none<Date>()
          : Option.some(
              Option.match(after, { onSome: (p) => new Date(p[3]), onNone: () => selection.until ?? now })
            )
      const bounded: Selection =
        selection._tag === "One" ? selection : { ...selection, until: Option.getOrUndefined(until) }
      const clauses = [
        ...selectionClauses(bounded),
        claimable(options.includeReplayed),
        ...Option.match(after, {
          onNone: () => [],
          onSome: ([at, partition, offset]) => [
            sql`(failed_at, partition, "offset") > (${at}::timestamptz, ${partition}, ${offset}::bigint)`
          ]
        })
      ]
      const rows = yield* sql<{
        partition: number
        offset: string
        kind: string
        failed_at: string
        key: Buffer | null
        bytes: number
      }>`
        SELECT partition, "offset"::text AS "offset", kind, ${failedAtText} AS failed_at, key,
               (size + coalesce(octet_length(key), 0) + octet_length(headers::text))::float8 AS bytes
        FROM dead_letters
        WHERE ${sql.and(clauses)}
        ORDER BY failed_at, partition, "offset"
        LIMIT ${options.limit + 1}`
      const page: Array<(typeof rows)[number]> = []
      let bytes = 0
      for (const row of rows) {
        if (page.length === options.limit || (page.length > 0 && bytes + row.bytes > options.maxBytes)) break
        page.push(row)
        bytes += row.bytes
      }
      const last = page.at(-1)
      return {
        letters: page.map((row) => ({
          partition: row.partition,
          offset: row.offset,
          kind: row.kind,
          key: row.key
        })),
        nextCursor:
          rows.length > page.length && last !== undefined
            ? Option.some(
                encodeCursor([
                  last.failed_at,
                  last.partition,
                  last.offset,
                  Option.getOrElse(until, () => now).toISOString()
                ])
              )
            : Option.none(),
        until
      } satisfies ReplayPage
    })

    /**
     * Holds `letters` for one replay to send, with their bytes: one statement, so of two replays
     * running at once each letter goes to one only. A letter held by another replay, or (unless
     * `includeReplayed`) replayed meanwhile, is left out. Rows are locked in key order, so that
     * two claims never wait for each other in a circle. The hold lasts `lease`: a process that
     * dies holding letters lets them go when it runs out. `settle` ends it.
     */
    const claim = Effect.fn("DeadLetterIndex.claim")(function* (
      letters: ReadonlyArray<Pick<LetterRef, "partition" | "offset">>,
      includeReplayed: boolean,
      lease: Duration.Duration
    ) {
      if (letters.length === 0) return { letters: [], token: "" } satisfies ClaimedLetters
      const positions = letters.map((l) => ({ partition: l.partition, offset: l.offset }))
      const rows = yield* sql<{
        partition: number
        offset: string
        kind: string
        key: Buffer | null
        value: Buffer | null
        headers: ReadonlyArray<HeaderJson>
        token: string
      }>`
        WITH held AS (
          SELECT d.partition, d."offset" FROM dead_letters d
          JOIN json_to_recordset(${JSON.stringify(positions)}::json) AS p(partition integer, "offset" bigint)
            ON d.partition = p.partition AND d."offset" = p."offset"
          WHERE ${claimable(includeReplayed)}
          ORDER BY d.partition, d."offset"
          FOR UPDATE OF d
        )
        UPDATE dead_letters d
        SET replay_claimed_until = now() + ${Duration.toMillis(lease)} * interval '1 millisecond'
        FROM held
        WHERE d.partition = held.partition AND d."offset" = held."offset"
        RETURNING d.partition, d."offset"::text AS "offset", d.kind, d.key, d.value, d.headers,
                  d.replay_claimed_until::text AS token`
      const byPosition = new Map(rows.map((r) => [`${r.partition}/${r.offset}`, r]))
      return {
        letters: letters.flatMap((l) => {
          const row = byPosition.get(`${l.partition}/${l.offset}`)
          return row === undefined
            ? []
            : [
                {
                  partition: row.partition,
                  offset: row.offset,
                  kind: row.kind,
                  key: row.key,
                  value: row.value,
                  headers: headersOf(row.headers)
                } satisfies StoredLetter
              ]
        }),
        token: rows[0]?.token ?? ""
      } satisfies ClaimedLetters
    })

    /**
     * Ends a claim: a letter the broker took is recorded as replayed `at`; one it refused is let
     * go as it was (replayed before or not). Only this claim's hold is ended (`token`): a letter
     * whose hold ran out and was taken by another replay is left to that one.
     */
    const settle = Effect.fn("DeadLetterIndex.settle")(function* (
      token: string,
      outcomes: ReadonlyArray<{
        readonly partition: number
        readonly offset: string
        readonly sent: boolean
      }>,
      at: Date
    ) {
      if (outcomes.length === 0) return
      yield* sql`
        UPDATE dead_letters d
        SET replay_claimed_until = NULL,
            replayed_at = CASE WHEN p.sent THEN ${at.toISOString()}::timestamptz ELSE d.replayed_at END
        FROM json_to_recordset(${JSON.stringify(outcomes)}::json) AS p(partition integer, "offset" bigint, sent boolean)
        WHERE d.partition = p.partition AND d."offset" = p."offset"
          AND d.replay_claimed_until = ${token}::timestamptz`
    })

    /**
     * Deletes the letters parked before `before`, at most `chunk` rows per statement until a
     * statement deletes fewer: each is its own short transaction, so a first prune of millions of
     * rows never holds their locks for long. Returns how many it deleted.
     */
    const prune = Effect.fn("DeadLetterIndex.prune")(function* (before: Date, chunk: number = PRUNE_CHUNK) {
      let removed = 0
      for (;;) {
        // The oldest rows first, read from `dead_letters_recent_idx` (failed_at leads it): a range
        // scan, not a sequential one. SKIP LOCKED: instances pruning at once take disjoint rows
        // and never wait for one another, and each row's deletion is counted by the one statement
        // that made it, so `dead_letter_kinds` stays exact. The counts are taken down in the same
        // statement, in the order of `kind` as `upsert` takes them up (no deadlock between them).
        const rows = yield* sql<{ removed: number }>`
          WITH doomed AS (
            SELECT partition, "offset" FROM dead_letters
            WHERE failed_at < ${before.toISOString()}::timestamptz
            ORDER BY failed_at
            LIMIT ${chunk}
            FOR UPDATE SKIP LOCKED
          ), gone AS (
            DELETE FROM dead_letters d USING doomed
            WHERE d.partition = doomed.partition AND d."offset" = doomed."offset"
            RETURNING d.kind
          ), counted AS (
            INSERT INTO dead_letter_kinds (kind, count)
            SELECT kind, 0 FROM gone GROUP BY kind ORDER BY kind
            ON CONFLICT (kind) DO UPDATE
            SET count = greatest(0, dead_letter_kinds.count -
                                    (SELECT count(*) FROM gone WHERE gone.kind = excluded.kind))
          )
          SELECT count(*)::int AS removed FROM gone`
        const n = rows[0]?.removed ?? 0
        removed += n
        if (n < chunk) return removed
      }
    })

    return {
      upsert,
      nextOffset,
      list,
      counts,
      countsStatement,
      get,
      count,
      select,
      claim,
      settle,
      prune
    } as const
  })
}) {}
