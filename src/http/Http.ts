/**
 * Handlers of the HTTP API, the extra routes (metrics, static files) and the app built from them.
 */
import { HttpApiBuilder, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { NodeHttpServerRequest } from "@effect/platform-node"
import { Duration, Effect, Layer, Option, Schema } from "effect"
import { OrderCache } from "../cache/OrderCache.ts"
import { IngestStatus } from "../ingest/IngestStatus.ts"
import { LiveFeed } from "../live/LiveFeed.ts"
import { Timestamp } from "../orders/Order.ts"
import { OrderRepository } from "../orders/OrderRepository.ts"
import { Orders } from "../orders/Orders.ts"
import { Prometheus } from "../observability/Prometheus.ts"
import {
  InvalidQuery,
  NotReady,
  OrderServiceApi,
  Ready,
  SEARCH_QUERY_MAX_LENGTH,
  Unavailable
} from "./Api.ts"
import * as ApiDocs from "./ApiDocs.ts"
import * as DeadLettersHttp from "./DeadLettersHttp.ts"
import { type OrderAnswer, OrderRoute } from "./OrderRoute.ts"
import { serveStaticFile, StaticFiles } from "./StaticFiles.ts"

const unavailable = (message: string) => new Unavailable({ message })

/** An answer of `OrderRoute` as the platform's response; the platform sets type and length itself. */
const toResponse = (answer: OrderAnswer): HttpServerResponse.HttpServerResponse => {
  const headers: Record<string, string> = {}
  for (let i = 0; i < answer.headers.length; i += 2) {
    const name = answer.headers[i]!
    if (name !== "content-type" && name !== "content-length") headers[name] = answer.headers[i + 1]!
  }
  return answer.body === undefined
    ? HttpServerResponse.empty({ status: answer.status, headers })
    : HttpServerResponse.text(answer.body, {
        status: answer.status,
        contentType: "application/json",
        headers
      })
}

const invalidQuery = (message: string) => new InvalidQuery({ message })

// eslint-disable-next-line no-control-regex
const CONTROL_CHARACTERS = /[\u0000-\u001f\u007f-\u009f]/

const pageLimit = (raw: string | undefined) => {
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
export const searchQueryOf = (params: {
  readonly q?: string | undefined
  readonly from?: string | undefined
  readonly to?: string | undefined
  readonly limit?: string | undefined
  readonly cursor?: string | undefined
}) =>
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

const ordersGroup = HttpApiBuilder.group(OrderServiceApi, "orders", (handlers) =>
  Effect.gen(function* () {
    const orders = yield* Orders
    const route = yield* OrderRoute
    const live = yield* LiveFeed
    return (
      handlers
        // The answers are those the API declares (Order, InvalidOrderUid, OrderNotFound, Unavailable),
        // built by OrderRoute, which the server's fast path uses too.
        .handle("getOrder", ({ path }) =>
          Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) =>
            Effect.map(route.answer(path.order_uid, request.headers["if-none-match"]), toResponse)
          )
        )
        .handle("listOrders", ({ urlParams }) =>
          Effect.gen(function* () {
            const limit = yield* pageLimit(urlParams.limit)
            const page = yield* orders.listRecent(limit, Option.fromNullable(urlParams.cursor)).pipe(
              Effect.catchTags({
                InvalidCursor: (e) => Effect.fail(new InvalidQuery({ message: e.message })),
                SqlError: () => Effect.fail(unavailable("the database cannot be reached"))
              })
            )
            return { items: page.items, next_cursor: Option.getOrNull(page.nextCursor) }
          })
        )
        .handle("searchOrders", ({ urlParams }) =>
          Effect.gen(function* () {
            const query = yield* searchQueryOf(urlParams)
            const page = yield* orders.search(query).pipe(
              Effect.catchTags({
                InvalidCursor: (e) => Effect.fail(invalidQuery(`cursor: ${e.message}`)),
                SqlError: () => Effect.fail(unavailable("the database cannot be reached"))
              })
            )
            return { items: page.items, next_cursor: Option.getOrNull(page.nextCursor) }
          })
        )
        .handle("liveOrders", () =>
          Effect.gen(function* () {
            const request = yield* HttpServerRequest.HttpServerRequest
            const response = NodeHttpServerRequest.toServerResponse(request)
            // On shutdown the stream ends at once: the browser reconnects, to another instance.
            const events = live.connect(
              Option.fromNullable(request.headers["last-event-id"]),
              Effect.sync(() => response.destroy())
            )
            return HttpServerResponse.stream(events, {
              contentType: "text/event-stream",
              headers: { "cache-control": "no-cache", "x-accel-buffering": "no" }
            })
          })
        )
    )
  })
)

const healthGroup = HttpApiBuilder.group(OrderServiceApi, "health", (handlers) =>
  Effect.gen(function* () {
    const repository = yield* OrderRepository
    const ingest = yield* IngestStatus
    const orders = yield* Orders
    return handlers
      .handle("healthz", () => Effect.succeed({ status: "ok" as const }))
      .handle("readyz", () =>
        Effect.gen(function* () {
          const [database, consumer, cache] = yield* Effect.all(
            [
              repository.ping.pipe(
                Effect.timeout(Duration.seconds(2)),
                Effect.as("ok" as const),
                Effect.orElseSucceed(() => "unreachable" as const)
              ),
              Effect.map(ingest.running, (running) => (running ? ("ok" as const) : ("stopped" as const))),
              Effect.map(orders.isWarm, (warm) => (warm ? ("ok" as const) : ("warming" as const)))
            ],
            { concurrency: "unbounded" }
          )
          const checks = { database, consumer, cache }
          if (database === "ok" && consumer === "ok" && cache === "ok")
            return new Ready({ status: "ready", checks })
          return yield* Effect.fail(new NotReady({ status: "not_ready", checks }))
        })
      )
  })
)

/** Routes outside the typed API: Prometheus metrics and the web page's files. */
const extraRoutes = HttpApiBuilder.Router.use((router) =>
  Effect.gen(function* () {
    const prometheus = yield* Prometheus
    const files = yield* StaticFiles
    const cache = yield* OrderCache
    yield* router.get(
      "/metrics",
      // The cache's fast-path counts are folded into its metrics first.
      cache.flushMetrics.pipe(
        Effect.zipRight(prometheus.scrape),
        Effect.map((text) => HttpServerResponse.text(text, { contentType: prometheus.contentType }))
      )
    )
    for (const [route, file] of files.routes) yield* router.get(route as `/${string}`, serveStaticFile(file))
  })
)

/** The whole API with its handlers, the OpenAPI document, its docs page and the extra routes. */
export const layer = Layer.mergeAll(
  HttpApiBuilder.middlewareOpenApi({ path: "/openapi.json" }),
  ApiDocs.layer,
  extraRoutes
).pipe(
  Layer.provideMerge(
    HttpApiBuilder.api(OrderServiceApi).pipe(Layer.provide([ordersGroup, healthGroup, DeadLettersHttp.layer]))
  )
)
