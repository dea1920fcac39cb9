/**
 * The dead-letter topic's index in PostgreSQL (table `dead_letters`): what `/dead-letters` lists,
 * shows and replays, so that none of it reads the topic. The topic stays the record: rows are
 * written from what a read_committed reader of the topic sees (src/deadletters/DeadLetterIndexer.ts),
 * idempotently by (partition, offset), and the table can always be rebuilt from the topic.
 */
import { isUtf8 } from "node:buffer"
import { SqlClient } from "@effect/sql"
import { Effect, Option, Schema } from "effect"
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

/** A cursor is the last row's (failed_at, partition, offset), opaque to clients. */
type Position = readonly [failedAt: string, partition: number, offset: string]

const encodeCursor = (p: Position) => Buffer.from(JSON.stringify(p)).toString("base64url")

const decodeCursor = (cursor: string): Option.Option<Position> => {
  try {
    const v: unknown = JSON.parse(Buffer.from(cursor, "base64url").toString("utf8"))
    if (
      Array.isArray(v) &&
      v.length === 3 &&
      typeof v[0] === "string" &&
      /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/.test(v[0]) &&
      Number.isSafeInteger(v[1]) &&
      typeof v[2] === "string" &&
      isOffset(v[2])
    )
      return Option.some([v[0], v[1], v[2]] as const)
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

    const cursorOf = (cursor: Option.Option<string>) =>
      Option.match(cursor, {
        onNone: () => Effect.succeed(Option.none<Position>()),
        onSome: (c) =>
          Option.match(decodeCursor(c), {
            onNone: () =>
              Effect.fail(
                new InvalidLetterCursor({ message: "the cursor is not one this service gave out" })
              ),
            onSome: (p) => Effect.succeed(Option.some(p))
          })
      })

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
     * Letters by kind. Over all time they come from `dead_letter_kinds`, one row per kind; over a
     * time range the range's rows are counted.
     */
    const counts = Effect.fn("DeadLetterIndex.counts")(function* (filter: Omit<LetterFilter, "kind">) {
      const rows =
        filter.since === undefined && filter.until === undefined
          ? yield* sql<{ kind: string; count: string }>`SELECT kind, count::text FROM dead_letter_kinds`
          : yield* sql<{ kind: string; count: string }>`
              SELECT kind, count(*)::text AS count FROM dead_letters
              WHERE ${sql.and(filterClauses(filter))} GROUP BY kind`
      return Object.fromEntries(rows.filter((r) => r.count !== "0").map((r) => [r.kind, Number(r.count)]))
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

    /** How many letters `selection` takes in. */
    const count = Effect.fn("DeadLetterIndex.count")(function* (selection: Selection) {
      const rows = yield* sql<{ n: string }>`
        SELECT count(*)::text AS n FROM dead_letters WHERE ${sql.and(selectionClauses(selection))}`
      return Number(rows[0]?.n ?? 0)
    })

    /** A page of `selection`, oldest first (the order they were parked in), with their bytes. */
    const select = Effect.fn("DeadLetterIndex.select")(function* (
      selection: Selection,
      limit: number,
      cursor: Option.Option<string>
    ) {
      const after = yield* cursorOf(cursor)
      const clauses = [
        ...selectionClauses(selection),
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
        value: Buffer | null
        headers: ReadonlyArray<HeaderJson>
      }>`
        SELECT partition, "offset"::text AS "offset", kind, ${failedAtText} AS failed_at, key, value, headers
        FROM dead_letters
        WHERE ${sql.and(clauses)}
        ORDER BY failed_at, partition, "offset"
        LIMIT ${limit + 1}`
      return pageOf(rows, limit, (row): StoredLetter => ({
        partition: row.partition,
        offset: row.offset,
        kind: row.kind,
        key: row.key,
        value: row.value,
        headers: headersOf(row.headers)
      }))
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

    return { upsert, nextOffset, list, counts, get, count, select, prune } as const
  })
}) {}
