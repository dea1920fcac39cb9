/**
 * `Idempotency-Key` for replay: a request sent again with the same key (and the same body) within
 * a day is answered what the first was answered, and sends nothing. Keys are the caller's own
 * (per subject) and kept in PostgreSQL (table `dead_letter_replay_requests`), so every instance
 * knows them; each new key deletes some of those past the window, so the table holds about a day
 * of keys.
 */
import { createHash } from "node:crypto"
import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { Data, Duration, Effect, Exit } from "effect"

/** How long a key is remembered. */
export const IDEMPOTENCY_WINDOW = Duration.hours(24)

export const MAX_IDEMPOTENCY_KEY_LENGTH = 200

/**
 * A request still running holds its key this long at most: one whose process died without
 * answering lets a request with its key run again after it (the letters it sent are recorded as
 * replayed; those it held run out as well: `DeadLetterReplay`'s `CLAIM_LEASE`).
 */
export const IN_FLIGHT_LEASE = Duration.minutes(10)

/** Keys deleted at most per new key: each statement stays short. */
const PRUNE_BATCH = 1_000

/** The key was used for another request (another body). */
export class IdempotencyKeyReused extends Data.TaggedError("IdempotencyKeyReused")<{
  readonly message: string
}> {}

/** A request with this key is still running: its answer is not known yet. */
export class IdempotencyKeyInUse extends Data.TaggedError("IdempotencyKeyInUse")<{
  readonly message: string
}> {}

/** JSON with its keys in order, so that `{"a":1,"b":2}` and `{"b":2,"a":1}` are one body. */
const canonical = (value: unknown): string =>
  Array.isArray(value)
    ? `[${value.map(canonical).join(",")}]`
    : value !== null && typeof value === "object"
      ? `{${Object.entries(value)
          .filter(([, v]) => v !== undefined)
          .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
          .map(([k, v]) => `${JSON.stringify(k)}:${canonical(v)}`)
          .join(",")}}`
      : JSON.stringify(value)

export const bodyHash = (body: unknown) => createHash("sha256").update(canonical(body)).digest("hex")

export interface IdempotentRequest {
  /** Who asked: keys are per caller. */
  readonly subject: string
  readonly key: string
  /** The request as decoded: compared by its SHA-256. */
  readonly body: unknown
}

export type Once<A> =
  | { readonly repeated: false; readonly answer: A }
  /** Sent again: what the first request was answered, as stored. */
  | { readonly repeated: true; readonly answer: unknown }

export const make = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  const windowMs = Duration.toMillis(IDEMPOTENCY_WINDOW)
  const leaseMs = Duration.toMillis(IN_FLIGHT_LEASE)

  /** Takes the key for this request; false if another request holds it. */
  const take = (r: IdempotentRequest, hash: string) =>
    Effect.gen(function* () {
      yield* sql`
        DELETE FROM dead_letter_replay_requests WHERE ctid IN (
          SELECT ctid FROM dead_letter_replay_requests
          WHERE created_at < now() - ${windowMs} * interval '1 millisecond'
          LIMIT ${PRUNE_BATCH})`
      // A key past the window is new again; one left running by a process that died is taken over.
      const rows = yield* sql<{ taken: boolean }>`
        INSERT INTO dead_letter_replay_requests AS r (subject, key, body_sha256)
        VALUES (${r.subject}, ${r.key}, ${hash})
        ON CONFLICT (subject, key) DO UPDATE
        SET body_sha256 = excluded.body_sha256, response = NULL, created_at = now()
        WHERE r.created_at < now() - ${windowMs} * interval '1 millisecond'
           OR (r.response IS NULL AND r.body_sha256 = excluded.body_sha256
               AND r.created_at < now() - ${leaseMs} * interval '1 millisecond')
        RETURNING true AS taken`
      return rows.length > 0
    })

  const stored = (r: IdempotentRequest) =>
    sql<{ body_sha256: string; response: unknown }>`
      SELECT body_sha256, response FROM dead_letter_replay_requests
      WHERE subject = ${r.subject} AND key = ${r.key}`.pipe(Effect.map((rows) => rows[0]))

  const forget = (r: IdempotentRequest) =>
    sql`
      DELETE FROM dead_letter_replay_requests
      WHERE subject = ${r.subject} AND key = ${r.key} AND response IS NULL`.pipe(
      Effect.catchAll((e) => Effect.logWarning("Could not release an idempotency key", e)),
      Effect.asVoid
    )

  /**
   * Runs `run` once for the request's key and answers with its result, stored as JSON; the same
   * key and body again answers the stored result without running anything. Only an answer is
   * stored: a request that failed frees its key, and may be sent again. It is not interrupted
   * (a caller that goes away leaves it running to the end), so that a key is never left taken
   * with no answer, and whatever was sent is what a retry is answered.
   */
  const once = <A, E, R>(
    request: IdempotentRequest,
    run: Effect.Effect<A, E, R>
  ): Effect.Effect<Once<A>, E | IdempotencyKeyReused | IdempotencyKeyInUse | SqlError, R> =>
    Effect.gen(function* () {
      const hash = bodyHash(request.body)
      for (let attempt = 0; ; attempt++) {
        if (yield* take(request, hash)) break
        const row = yield* stored(request)
        // Deleted meanwhile (its request failed, or it passed the window): take it again, once.
        if (row === undefined && attempt === 0) continue
        if (row !== undefined && row.body_sha256 !== hash)
          return yield* new IdempotencyKeyReused({
            message: "this Idempotency-Key was used for another request; use a new key for this one"
          })
        if (row === undefined || row.response === null)
          return yield* new IdempotencyKeyInUse({
            message: "a request with this Idempotency-Key is still running; send it again shortly"
          })
        return { repeated: true, answer: row.response } as const
      }
      const answer = yield* run.pipe(
        Effect.tap((a) =>
          sql`
              UPDATE dead_letter_replay_requests SET response = ${JSON.stringify(a)}::jsonb
              WHERE subject = ${request.subject} AND key = ${request.key}`.pipe(
            Effect.catchAll((e) =>
              Effect.zipRight(
                Effect.logWarning("Could not store a replay's answer under its Idempotency-Key", e),
                forget(request)
              )
            )
          )
        ),
        Effect.onExit((exit) => (Exit.isSuccess(exit) ? Effect.void : forget(request)))
      )
      return { repeated: false, answer } as const
    }).pipe(Effect.uninterruptible)

  return { once } as const
})
