import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * `dead_letters`: an index of the dead-letter topic, one row per letter, keyed by its place on
 * the topic (`partition`, `offset`). The topic stays the record; this table is what the service
 * lists, shows and replays from without reading the topic, and it can be rebuilt from the topic.
 * It keeps each letter whole (key, value, headers) so that showing or replaying one needs no read
 * of Kafka. Pages are read newest first by (failed_at, partition, offset), and by kind.
 *
 * `dead_letter_kinds` counts the rows by kind, kept in the same transaction as the rows, so that
 * the counts of millions of letters cost one small read.
 */
export default Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  yield* sql`
    CREATE TABLE dead_letters (
      partition        integer     NOT NULL CHECK (partition >= 0),
      "offset"         bigint      NOT NULL CHECK ("offset" >= 0),
      kind             text        NOT NULL,
      detail           text        NOT NULL,
      failed_at        timestamptz NOT NULL,
      source_topic     text,
      source_partition integer,
      source_offset    bigint,
      key              bytea,
      value            bytea,
      size             integer     NOT NULL,
      headers          jsonb       NOT NULL,
      order_uid        text,
      replay_of        text,
      indexed_at       timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (partition, "offset")
    )`
  yield* sql`CREATE INDEX dead_letters_recent_idx ON dead_letters (failed_at DESC, partition DESC, "offset" DESC)`
  yield* sql`
    CREATE INDEX dead_letters_kind_idx ON dead_letters (kind, failed_at DESC, partition DESC, "offset" DESC)`
  yield* sql`
    CREATE TABLE dead_letter_kinds (
      kind  text   PRIMARY KEY,
      count bigint NOT NULL CHECK (count >= 0)
    )`
})
