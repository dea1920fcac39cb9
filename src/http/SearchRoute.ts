/**
 * `GET /orders/search`, answered in one place. The `searchOrders` handler of the HttpApi answers
 * with it, and so does the HTTP server below the router (`http.fast_paths`) for a search whose
 * query decodes — the costliest request a client can repeat, where the router, the API's decoding
 * and its middleware cost three times what the search itself costs the service (measured:
 * docs/perf-notes/2026-12-08-search-through-the-router.md). Both decode the query with the API's
 * `SearchParams` and write `answer`'s bytes, so the two cannot answer differently; a query that
 * does not decode is left to the router, which says why (400).
 */
import { Effect, Option, Schema } from "effect"
import { Orders } from "../orders/Orders.ts"
import { type Answer, json } from "./Answer.ts"
import { DEFAULT_PAGE_LIMIT, InvalidQuery, SearchParams } from "./Api.ts"
import { readFailedAnswer } from "./ReadFailures.ts"

export const SEARCH_PATH = "/orders/search"

const encodeInvalidQuery = Schema.encodeSync(InvalidQuery)
const decodeParams = Schema.decodeUnknownOption(SearchParams)

/**
 * The query string's parameters as the platform hands them to the API's decoding (a name given
 * twice is a list, which `SearchParams` refuses), decoded; none when they do not decode.
 */
export const searchParamsOf = (queryString: string): Option.Option<typeof SearchParams.Type> => {
  const record: Record<string, string | Array<string>> = {}
  for (const [name, value] of new URLSearchParams(queryString)) {
    const before = record[name]
    record[name] = before === undefined ? value : Array.isArray(before) ? [...before, value] : [before, value]
  }
  return decodeParams(record)
}

export class SearchRoute extends Effect.Service<SearchRoute>()("SearchRoute", {
  effect: Effect.gen(function* () {
    const orders = yield* Orders

    /**
     * The answer to a search: its page of summaries, a 400 for a cursor the service never gave, a
     * 503 for a read refused, too slow or out of reach (see ReadFailures). Interrupted while it
     * waits for a connection (its client has gone), it leaves the line and never runs.
     */
    const answer = (params: typeof SearchParams.Type): Effect.Effect<Answer> =>
      orders
        .search({
          q: Option.fromNullable(params.q),
          from: Option.fromNullable(params.from),
          to: Option.fromNullable(params.to),
          limit: params.limit ?? DEFAULT_PAGE_LIMIT,
          cursor: Option.fromNullable(params.cursor)
        })
        .pipe(
          Effect.match({
            onSuccess: (page): Answer =>
              json(200, { items: page.items, next_cursor: Option.getOrNull(page.nextCursor) }),
            onFailure: (error): Answer =>
              error._tag === "InvalidCursor"
                ? json(400, encodeInvalidQuery(new InvalidQuery({ message: `cursor: ${error.message}` })))
                : readFailedAnswer(error)
          })
        )

    return { answer } as const
  })
}) {}
