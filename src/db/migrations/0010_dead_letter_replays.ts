import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * What replay needs to know about each letter, and the answers it gave (src/deadletters/).
 *
 * `dead_letters.replayed_at`: when the letter was last sent back to the orders topic (the broker
 * took it), null if never. A replay takes only letters not yet replayed unless asked to.
 * `dead_letters.replay_claimed_until`: set while a replay is sending the letter (a lease), so that
 * two replays running at once never both send it; cleared once the send is settled. A claim left
 * by a process that died runs out by itself and the letter can be taken again.
 *
 * `dead_letters_unreplayed_idx`: the letters not yet replayed in the order replay takes them, so a
 * page of them is found without walking the ones replayed before.
 *
 * `dead_letter_replay_requests`: a replay's `Idempotency-Key` (per caller), the SHA-256 of its
 * request and the answer given, so that a request sent again is answered the same without sending
 * anything. Rows older than a day are deleted as new ones come (see ReplayRequests.ts).
 */
export default Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  yield* sql`
    ALTER TABLE dead_letters
      ADD COLUMN replayed_at          timestamptz,
      ADD COLUMN replay_claimed_until timestamptz`
  yield* sql`
    CREATE INDEX dead_letters_unreplayed_idx ON dead_letters (failed_at, partition, "offset")
    WHERE replayed_at IS NULL`
  yield* sql`
    CREATE TABLE dead_letter_replay_requests (
      subject     text        NOT NULL,
      key         text        NOT NULL CHECK (length(key) BETWEEN 1 AND 200),
      body_sha256 text        NOT NULL,
      response    jsonb,
      created_at  timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (subject, key)
    )`
  yield* sql`CREATE INDEX dead_letter_replay_requests_created_idx ON dead_letter_replay_requests (created_at)`
})
