import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * `auth_sessions`: the sessions of people signed in through the OpenID provider, shared by every
 * instance so that a session works on whichever one answers and a sign-out ends it on all. The
 * browser holds a random id; the table holds its SHA-256 only, so a copy of the table signs nobody
 * in. Expired rows are deleted by the service as it goes (by `expires_at`).
 */
export default Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  yield* sql`
    CREATE TABLE auth_sessions (
      id_hash    bytea       PRIMARY KEY,
      subject    text        NOT NULL,
      name       text,
      roles      text[]      NOT NULL,
      id_token   text,
      created_at timestamptz NOT NULL DEFAULT now(),
      expires_at timestamptz NOT NULL
    )
  `
  yield* sql`CREATE INDEX auth_sessions_expires_at ON auth_sessions (expires_at)`
})
