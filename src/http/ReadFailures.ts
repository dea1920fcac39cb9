/**
 * How a read for an HTTP client that did not come back is answered, in one place, so that the
 * order fast path (`OrderRoute`) and the router's handlers answer alike:
 *
 * - refused by the line of reads (`database.client_read_queue`): 503 `overloaded`, `Retry-After: 1`;
 * - cancelled by PostgreSQL past `database.client_statement_timeout`: 503 `unavailable`, "the
 *   database took too long", `Retry-After: 1`;
 * - anything else from the database (out of reach): 503 `unavailable`, `databaseUnreachable`.
 */
import type { HttpServerResponse } from "@effect/platform"
import { SqlError } from "@effect/sql/SqlError"
import { Effect, Schema } from "effect"
import { ReadQueueFull } from "../db/ClientReads.ts"
import { isStatementCancelled } from "../db/SqlErrors.ts"
import { type Answer, json, responseOf, withHeaders } from "./Answer.ts"
import { Overloaded, Unavailable } from "./Api.ts"

const encodeOverloaded = Schema.encodeSync(Overloaded)
const encodeUnavailable = Schema.encodeSync(Unavailable)

/** The database cannot be reached: the one error for it, wherever a request meets it. */
export const databaseUnreachable = (): Unavailable =>
  new Unavailable({ message: "the database cannot be reached" })

const retryAfterOneSecond = (answer: Answer): Answer => withHeaders(answer, "retry-after", "1")

export const READ_QUEUE_FULL_MESSAGE = "too many reads are waiting for the database; retry shortly"
export const TOOK_TOO_LONG_MESSAGE = "the database took too long"

export const readQueueFullAnswer: Answer = retryAfterOneSecond(
  json(
    503,
    encodeOverloaded(
      new Overloaded({ message: READ_QUEUE_FULL_MESSAGE, limit: "database.client_read_queue" })
    )
  )
)

export const tookTooLongAnswer: Answer = retryAfterOneSecond(
  json(503, encodeUnavailable(new Unavailable({ message: TOOK_TOO_LONG_MESSAGE })))
)

/** `databaseUnreachable` as an answer, for those written below the router. */
export const unreachableAnswer: Answer = json(503, encodeUnavailable(databaseUnreachable()))

/** The answer to a read that failed. */
export const readFailedAnswer = (error: SqlError | ReadQueueFull): Answer =>
  error instanceof ReadQueueFull
    ? readQueueFullAnswer
    : isStatementCancelled(error)
      ? tookTooLongAnswer
      : unreachableAnswer

const isReadFailure = (error: unknown): error is SqlError | ReadQueueFull =>
  error instanceof SqlError || error instanceof ReadQueueFull

/**
 * For a handler of the router: a read refused or cancelled is answered as the fast path answers
 * it (a response, with its `Retry-After`, which a failure through the API's errors could not
 * carry); a database out of reach is the `Unavailable` error, `databaseUnreachable`.
 */
export const answerReadFailures = <A, E, R>(
  effect: Effect.Effect<A, E, R>
): Effect.Effect<
  A | HttpServerResponse.HttpServerResponse,
  Exclude<E, SqlError | ReadQueueFull> | Unavailable,
  R
> =>
  Effect.catchAll(
    effect,
    (
      error
    ): Effect.Effect<
      HttpServerResponse.HttpServerResponse,
      Exclude<E, SqlError | ReadQueueFull> | Unavailable
    > => {
      if (!isReadFailure(error)) return Effect.fail(error as Exclude<E, SqlError | ReadQueueFull>)
      const answer = readFailedAnswer(error)
      return answer === unreachableAnswer
        ? Effect.fail(databaseUnreachable())
        : Effect.succeed(responseOf(answer))
    }
  )
