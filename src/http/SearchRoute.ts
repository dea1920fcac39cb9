/**
 * `GET /orders/search`, answered in one place. The HTTP server calls it below the router (see
 * src/http/HttpServer.ts): a search is the costliest request a client can repeat, and the router,
 * the API's decoding and its middleware were most of the service's CPU for one. The `searchOrders`
 * handler of the HttpApi calls it too, so the two cannot answer differently — same status, headers
 * and bytes.
 */
import type { SqlError } from "@effect/sql/SqlError"
import type { ReadQueueFull } from "../db/ClientReads.ts"
import { Cause, Effect, Either, Exit, Option, Schema } from "effect"
import { Timestamp } from "../orders/Order.ts"
import type { InvalidCursor, RecentOrders, SearchQuery } from "../orders/OrderRepository.ts"
import { Orders } from "../orders/Orders.ts"
import { type Answer, json } from "./Answer.ts"
import { InvalidQuery, SEARCH_QUERY_MAX_LENGTH } from "./Api.ts"
import { readFailedAnswer } from "./ReadFailures.ts"

/** The query parameters a search reads, as they arrived (percent-decoded); absent when not given. */
export interface SearchParams {
  readonly q?: string | undefined
  readonly from?: string | undefined
  readonly to?: string | undefined
  readonly limit?: string | undefined
  readonly cursor?: string | undefined
}

const PARAMS = ["q", "from", "to", "limit", "cursor"] as const

/**
 * The parameters of a query string, or undefined when one of them is given twice: the API's own
 * decoding refuses that with its error, so such a request is left to the router.
 */
export const searchParamsOf = (queryString: string): SearchParams | undefined => {
  const all = new URLSearchParams(queryString)
  const params: Record<string, string> = {}
  for (const name of PARAMS) {
    const values = all.getAll(name)
    if (values.length > 1) return undefined
    if (values.length === 1) params[name] = values[0]!
  }
  return params
}

const invalidQuery = (message: string) => new InvalidQuery({ message })

// eslint-disable-next-line no-control-regex
const CONTROL_CHARACTERS = /[\u0000-\u001f\u007f-\u009f]/

/** `limit` as every paged listing takes it: 1–100, 20 when not given. */
export const pageLimit = (raw: string | undefined): Either.Either<number, InvalidQuery> => {
  const limit = raw === undefined ? 20 : Number(raw)
  return Number.isInteger(limit) && limit >= 1 && limit <= 100
    ? Either.right(limit)
    : Either.left(invalidQuery("limit must be a whole number from 1 to 100"))
}

const isTimestamp = Schema.is(Timestamp)

/** An RFC 3339 bound, or a 400 naming the parameter. */
const dateBound = (
  name: string,
  raw: string | undefined
): Either.Either<Option.Option<string>, InvalidQuery> =>
  raw === undefined || raw.trim() === ""
    ? Either.right(Option.none())
    : isTimestamp(raw.trim())
      ? Either.right(Option.some(raw.trim()))
      : Either.left(
          invalidQuery(
            `${name} must be an RFC 3339 timestamp with a zone, such as 2021-11-26T06:22:19Z; got ${JSON.stringify(raw.slice(0, 64))}`
          )
        )

/** What the search looks for: blank means not given; at least one of q, from, to. */
export const searchQueryOf = (params: SearchParams): Either.Either<SearchQuery, InvalidQuery> => {
  const q = (params.q ?? "").trim()
  if (q.length > SEARCH_QUERY_MAX_LENGTH)
    return Either.left(
      invalidQuery(`q must be at most ${SEARCH_QUERY_MAX_LENGTH} characters; it has ${q.length}`)
    )
  if (CONTROL_CHARACTERS.test(q))
    return Either.left(invalidQuery("q must not contain control characters (a tab, line break or similar)"))
  const from = dateBound("from", params.from)
  if (Either.isLeft(from)) return Either.left(from.left)
  const to = dateBound("to", params.to)
  if (Either.isLeft(to)) return Either.left(to.left)
  if (
    Option.isSome(from.right) &&
    Option.isSome(to.right) &&
    Date.parse(from.right.value) >= Date.parse(to.right.value)
  )
    return Either.left(invalidQuery("from must be before to"))
  if (q === "" && Option.isNone(from.right) && Option.isNone(to.right))
    return Either.left(invalidQuery("give q (what to look for), from or to"))
  return Either.map(pageLimit(params.limit), (limit) => ({
    q: q === "" ? Option.none<string>() : Option.some(q),
    from: from.right,
    to: to.right,
    limit,
    cursor: Option.fromNullable(params.cursor)
  }))
}

const encodeInvalidQuery = Schema.encodeSync(InvalidQuery)

const invalid = (error: InvalidQuery): Answer => json(400, encodeInvalidQuery(error))

/**
 * The answer for how the search ended: its page, a 400 for a cursor, a 503 (refused, too slow, the
 * database out of reach: see ReadFailures); a defect stays one.
 */
const answerOf = (
  searched: Exit.Exit<RecentOrders, InvalidCursor | SqlError | ReadQueueFull>
): Exit.Exit<Answer> => {
  if (Exit.isSuccess(searched)) {
    const page = searched.value
    return Exit.succeed(json(200, { items: page.items, next_cursor: Option.getOrNull(page.nextCursor) }))
  }
  const failure = Cause.failureOption(searched.cause)
  if (Option.isNone(failure)) return Exit.failCause(Cause.stripFailures(searched.cause))
  return Exit.succeed(
    failure.value._tag === "InvalidCursor"
      ? invalid(invalidQuery(`cursor: ${failure.value.message}`))
      : readFailedAnswer(failure.value)
  )
}

export class SearchRoute extends Effect.Service<SearchRoute>()("SearchRoute", {
  effect: Effect.gen(function* () {
    const orders = yield* Orders

    /**
     * The answer to a search, without an Effect: its page of summaries, a 400 naming the bad
     * parameter, or a 503. `done` is called once, with an exit that fails only with a defect,
     * unless the returned `leave` is called while the search waits for a connection (it then
     * returns true: the client has gone, and the search is not run).
     */
    const unsafeAnswer = (
      params: SearchParams,
      done: (answer: Exit.Exit<Answer>) => void
    ): (() => boolean) => {
      const query = searchQueryOf(params)
      if (Either.isLeft(query)) {
        done(Exit.succeed(invalid(query.left)))
        return () => false
      }
      return orders.unsafeSearch(query.right, (searched) => done(answerOf(searched)))
    }

    /** `unsafeAnswer` as an Effect; interrupted while it waits for a connection, it leaves the line. */
    const answer = (params: SearchParams): Effect.Effect<Answer> =>
      Effect.async((resume) => {
        const leave = unsafeAnswer(params, resume)
        return Effect.sync(leave)
      })

    return { answer, unsafeAnswer } as const
  })
}) {}
