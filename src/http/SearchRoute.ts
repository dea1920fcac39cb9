/**
 * `GET /orders/search`, answered in one place. The HTTP server calls it below the router (see
 * src/http/HttpServer.ts): a search is the costliest request a client can repeat, and the router,
 * the API's decoding and its middleware were most of the service's CPU for one. The `searchOrders`
 * handler of the HttpApi calls it too, so the two cannot answer differently — same status, headers
 * and bytes.
 */
import { Effect, Exit, Option, Runtime, Schema } from "effect"
import { Timestamp } from "../orders/Order.ts"
import type { SearchQuery } from "../orders/OrderRepository.ts"
import { Orders } from "../orders/Orders.ts"
import { type Answer, json } from "./Answer.ts"
import { InvalidQuery, SEARCH_QUERY_MAX_LENGTH, Unavailable } from "./Api.ts"

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
export const pageLimit = (raw: string | undefined) => {
  const limit = raw === undefined ? 20 : Number(raw)
  return Number.isInteger(limit) && limit >= 1 && limit <= 100
    ? Effect.succeed(limit)
    : Effect.fail(invalidQuery("limit must be a whole number from 1 to 100"))
}

const isTimestamp = Schema.is(Timestamp)

/** An RFC 3339 bound, or a 400 naming the parameter. */
const dateBound = (name: string, raw: string | undefined) =>
  raw === undefined || raw.trim() === ""
    ? Effect.succeed(Option.none<string>())
    : isTimestamp(raw.trim())
      ? Effect.succeed(Option.some(raw.trim()))
      : Effect.fail(
          invalidQuery(
            `${name} must be an RFC 3339 timestamp with a zone, such as 2021-11-26T06:22:19Z; got ${JSON.stringify(raw.slice(0, 64))}`
          )
        )

/** What the search looks for: blank means not given; at least one of q, from, to. */
export const searchQueryOf = (params: SearchParams): Effect.Effect<SearchQuery, InvalidQuery> =>
  Effect.gen(function* () {
    const q = (params.q ?? "").trim()
    if (q.length > SEARCH_QUERY_MAX_LENGTH) {
      return yield* Effect.fail(
        invalidQuery(`q must be at most ${SEARCH_QUERY_MAX_LENGTH} characters; it has ${q.length}`)
      )
    }
    if (CONTROL_CHARACTERS.test(q)) {
      return yield* Effect.fail(
        invalidQuery("q must not contain control characters (a tab, line break or similar)")
      )
    }
    const from = yield* dateBound("from", params.from)
    const to = yield* dateBound("to", params.to)
    if (Option.isSome(from) && Option.isSome(to) && Date.parse(from.value) >= Date.parse(to.value)) {
      return yield* Effect.fail(invalidQuery("from must be before to"))
    }
    if (q === "" && Option.isNone(from) && Option.isNone(to)) {
      return yield* Effect.fail(invalidQuery("give q (what to look for), from or to"))
    }
    return {
      q: q === "" ? Option.none<string>() : Option.some(q),
      from,
      to,
      limit: yield* pageLimit(params.limit),
      cursor: Option.fromNullable(params.cursor)
    }
  })

const encodeInvalidQuery = Schema.encodeSync(InvalidQuery)
const encodeUnavailable = Schema.encodeSync(Unavailable)

const invalid = (error: InvalidQuery): Answer => json(400, encodeInvalidQuery(error))

const unavailable = json(
  503,
  encodeUnavailable(new Unavailable({ message: "the database cannot be reached" }))
)

export class SearchRoute extends Effect.Service<SearchRoute>()("SearchRoute", {
  effect: Effect.gen(function* () {
    const orders = yield* Orders
    const runCallback = Runtime.runCallback(yield* Effect.runtime<never>())

    /** The answer to a search: its page of summaries, a 400 naming the bad parameter, or a 503. */
    const answer = (params: SearchParams): Effect.Effect<Answer> =>
      Effect.flatMap(searchQueryOf(params), orders.search).pipe(
        Effect.map((page) =>
          json(200, { items: page.items, next_cursor: Option.getOrNull(page.nextCursor) })
        ),
        Effect.catchTags({
          InvalidQuery: (e) => Effect.succeed(invalid(e)),
          InvalidCursor: (e) => Effect.succeed(invalid(invalidQuery(`cursor: ${e.message}`))),
          SqlError: () => Effect.succeed(unavailable)
        })
      )

    /** `answer`, for a caller outside any fiber: `done` is called once; its exit fails only with a defect. */
    const unsafeAnswer = (params: SearchParams, done: (exit: Exit.Exit<Answer>) => void) =>
      runCallback(answer(params), { onExit: done })

    return { answer, unsafeAnswer } as const
  })
}) {}
