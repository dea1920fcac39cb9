/**
 * Handlers of the HTTP API, the extra routes (metrics, static files) and the app built from them.
 */
import { HttpApiBuilder, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { NodeHttpServerRequest } from "@effect/platform-node"
import { Duration, Effect, Either, Layer, Option } from "effect"
import { OrderCache } from "../cache/OrderCache.ts"
import { IngestStatus } from "../ingest/IngestStatus.ts"
import { LiveFeed } from "../live/LiveFeed.ts"
import { OrderRepository } from "../orders/OrderRepository.ts"
import { Orders } from "../orders/Orders.ts"
import { Prometheus } from "../observability/Prometheus.ts"
import { InvalidQuery, NotReady, OrderServiceApi, Ready } from "./Api.ts"
import * as ApiDocs from "./ApiDocs.ts"
import * as AuthHttp from "./AuthHttp.ts"
import * as DeadLettersHttp from "./DeadLettersHttp.ts"
import { encodingOf, liveHeaders } from "./LiveRoute.ts"
import { OrderRoute } from "./OrderRoute.ts"
import { answerReadFailures, responseOf } from "./ReadFailures.ts"
import { pageLimit, SearchRoute } from "./SearchRoute.ts"
import { serveStaticFile, StaticFiles } from "./StaticFiles.ts"

const ordersGroup = HttpApiBuilder.group(OrderServiceApi, "orders", (handlers) =>
  Effect.gen(function* () {
    const orders = yield* Orders
    const route = yield* OrderRoute
    const search = yield* SearchRoute
    const live = yield* LiveFeed
    return (
      handlers
        // The answers are those the API declares (Order, InvalidOrderUid, OrderNotFound, Unavailable),
        // built by OrderRoute, which the server's fast path uses too.
        .handle("getOrder", ({ path }) =>
          Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) =>
            Effect.map(route.answer(path.order_uid, request.headers["if-none-match"]), responseOf)
          )
        )
        .handle("listOrders", ({ urlParams }) =>
          Effect.gen(function* () {
            const limit = yield* pageLimit(urlParams.limit)
            const page = yield* orders
              .listRecent(limit, Option.fromNullable(urlParams.cursor))
              .pipe(
                Effect.catchTag("InvalidCursor", (e) => Effect.fail(new InvalidQuery({ message: e.message })))
              )
            return { items: page.items, next_cursor: Option.getOrNull(page.nextCursor) }
            // Refused, too slow or the database out of reach: a 503, as the fast paths answer it.
          }).pipe(answerReadFailures)
        )
        // Answered by SearchRoute, which the server's fast path uses too.
        .handle("searchOrders", ({ urlParams }) => Effect.map(search.answer(urlParams), responseOf))
        .handle("liveOrders", () =>
          Effect.gen(function* () {
            const request = yield* HttpServerRequest.HttpServerRequest
            const response = NodeHttpServerRequest.toServerResponse(request)
            const encoding = encodingOf(request.headers)
            // On shutdown the stream ends at once: the browser reconnects, to another instance.
            // Attached until the request's scope closes (its stream ended, or the client went);
            // past `live.max_clients` (or per address: the connection's, see LiveFeed) a 503.
            const events = yield* live.connect({
              lastEventId: Option.fromNullable(request.headers["last-event-id"]),
              encoding,
              address: NodeHttpServerRequest.toIncomingMessage(request).socket.remoteAddress,
              disconnect: Effect.sync(() => response.destroy()),
              writableLength: () => response.writableLength
            })
            if (Either.isLeft(events)) return responseOf(events.left)
            const { "content-type": contentType, ...headers } = liveHeaders(encoding)
            return HttpServerResponse.stream(events.right, { contentType, headers })
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
    HttpApiBuilder.api(OrderServiceApi).pipe(
      Layer.provide([ordersGroup, healthGroup, DeadLettersHttp.layer, AuthHttp.layer])
    )
  )
)
