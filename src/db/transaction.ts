import type { SqlClient } from "@effect/sql"
import { SqlError } from "@effect/sql/SqlError"
import { Effect, Option } from "effect"

/**
 * `effect` in one transaction. @effect/sql turns a failed COMMIT or ROLLBACK into a defect; here it
 * stays a `SqlError` failure, as for any other statement. That happens when the connection dies
 * mid-transaction (PostgreSQL restarted), and callers must be able to retry it like any outage —
 * a COMMIT that failed may have committed, which the idempotent insert makes harmless.
 */
export const transaction =
  (sql: SqlClient.SqlClient) =>
  <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E | SqlError, R> =>
    sql
      .withTransaction(effect)
      .pipe(
        Effect.catchSomeDefect((defect) =>
          defect instanceof SqlError ? Option.some(Effect.fail(defect)) : Option.none()
        )
      )
