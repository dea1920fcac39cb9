/**
 * Handlers of the HTTP API, the extra routes (metrics, static files) and the app built from them.
 *
 * Handlers return the success the API declares and fail with its errors, with two exceptions, each
 * a response built first: a read refused or too slow is a 503 with `Retry-After`
 * (`answerReadFailures`; an error cannot carry a header), and `getOrder` and `searchOrders` answer
 * with `OrderRoute`'s and `SearchRoute`'s answers, which the server's fast path writes too, byte
 * for byte.
 */
import type { HttpApp } from "@effect/platform"
import { HttpApiBuilder, HttpApiError, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import type { SqlError } from "@effect/sql/SqlError"
import { NodeHttpServerRequest } from "@effect/platform-node"
import { Duration, Effect, Either, Layer, Option } from "effect"
import { ORDER_PREFIX } from "../auth/Access.ts"
import { OrderCache } from "../cache/OrderCache.ts"
import type { ReadQueueFull } from "../db/ClientReads.ts"
import { IngestStatus } from "../ingest/IngestStatus.ts"
import { LiveFeed } from "../live/LiveFeed.ts"
import { type InvalidCursor, OrderRepository, type RecentOrders } from "../orders/OrderRepository.ts"
import { Orders } from "../orders/Orders.ts"
import { Prometheus } from "../observability/Prometheus.ts"
import { type Answer, responseOf } from "./Answer.ts"
import { DEFAULT_PAGE_LIMIT, InvalidQuery, NotReady, OrderServiceApi, OrdersGroup, Ready } from "./Api.ts"
import * as ApiDocs from "./ApiDocs.ts"
import * as AuthHttp from "./AuthHttp.ts"
import * as DeadLettersHttp from "./DeadLettersHttp.ts"
import { closedOf, encodingOf, subscriberOf } from "./LiveRoute.ts"
import { OrderRoute, uidFromPath } from "./OrderRoute.ts"
import { answerReadFailures } from "./ReadFailures.ts"
import { SearchRoute } from "./SearchRoute.ts"
import { serveStaticFile, StaticFiles } from "./StaticFiles.ts"

/**
 * A page of orders as the API declares it; a cursor the service never gave is a 400. Refused, too
 * slow or the database out of reach: a 503, as the fast path answers it.
 */
const pageOf = (read: Effect.Effect<RecentOrders, InvalidCursor | SqlError | ReadQueueFull>) =>
  read.pipe(
    Effect.catchTag("InvalidCursor", (e) =>
      Effect.fail(new InvalidQuery({ message: `cursor: ${e.message}` }))
    ),
    Effect.map((page) => ({ items: page.items, next_cursor: Option.getOrNull(page.nextCursor) })),
    answerReadFailures
  )

const ordersGroup = HttpApiBuilder.group(OrderServiceApi, "orders", (handlers) =>
  Effect.gen(function* () {
    const orders = yield* Orders
    const route = yield* OrderRoute
    const search = yield* SearchRoute
    const live = yield* LiveFeed
    // No span per request (`fnUntraced`): the platform's is off as well (see HttpServer).
    return handlers
      .handle(
        "getOrder",
        Effect.fnUntraced(function* ({ request }) {
          // The id read from the path as it arrived, as the fast path reads it: the router's
          // parameter stops at a `;` (`/order/a;b` would look for `a`).
          const decoded = uidFromPath(request.url.split("?", 1)[0]!.slice(ORDER_PREFIX.length))
          if (Either.isLeft(decoded)) return responseOf(decoded.left)
          const uid = decoded.right
          const ifNoneMatch = request.headers["if-none-match"]
          const answer =
            route.answerNow(uid, ifNoneMatch) ??
            (yield* Effect.async<Answer>((resume) => route.answerMissed(uid, ifNoneMatch, resume)))
          return responseOf(answer)
        })
      )
      .handle("listOrders", ({ urlParams }) =>
        pageOf(
          orders.listRecent(urlParams.limit ?? DEFAULT_PAGE_LIMIT, Option.fromNullable(urlParams.cursor))
        )
      )
      .handle("searchOrders", ({ urlParams }) => Effect.map(search.answer(urlParams), responseOf))
      .handle(
        "liveOrders",
        Effect.fnUntraced(function* ({ request }) {
          // Events are written to the Node response itself, from the feed's loop (see LiveRoute).
          const response = NodeHttpServerRequest.toServerResponse(request)
          const encoding = encodingOf(request.headers)
          const lastEventId = request.headers["last-event-id"]
          // Attached until the connection closes: its stream ended (on shutdown at once: the
          // browser reconnects, to another instance), it fell behind, or the client went. Past
          // `live.max_clients` (or per address: the connection's, see LiveFeed), a 503.
          const refusal = yield* live.follow({
            lastEventId,
            encoding,
            address: NodeHttpServerRequest.toIncomingMessage(request).socket.remoteAddress,
            subscriber: subscriberOf(response, encoding),
            closed: closedOf(response)
          })
          // Once the stream has ended, this is not written: the platform sees the response done.
          return refusal === undefined ? HttpServerResponse.empty() : responseOf(refusal)
        })
      )
  })
)

/** The paths of the orders' listings, whose query parameters the API declares as Schema types. */
const QUERY_CHECKED: ReadonlySet<string> = new Set(
  Object.values(OrdersGroup.endpoints)
    .filter((endpoint) => endpoint.urlParamsSchema._tag === "Some")
    .map((endpoint) => endpoint.path)
)

/**
 * A query parameter of the orders' listings that does not decode is answered as the contract
 * says, `InvalidQuery` with the reason its schema gives (`Api.ts`), rather than the platform's
 * `HttpApiDecodeError`. These are GETs, without a body: the query is all the platform decodes.
 */
const queryRefusals = HttpApiBuilder.middleware(
  OrderServiceApi,
  (app) =>
    Effect.catchAll(
      app,
      (error: unknown) =>
        Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) =>
          error instanceof HttpApiError.HttpApiDecodeError && QUERY_CHECKED.has(request.url.split("?", 1)[0]!)
            ? Effect.fail(new InvalidQuery({ message: error.issues[0]?.message ?? error.message }))
            : Effect.fail(error)
        )
      // The app fails with the errors of every group, which are encoded after this (`InvalidQuery`
      // among them); the platform's type says those of the API alone.
    ) as HttpApp.Default<HttpApiError.HttpApiDecodeError>
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
  extraRoutes,
  queryRefusals
).pipe(
  Layer.provideMerge(
    HttpApiBuilder.api(OrderServiceApi).pipe(
      Layer.provide([ordersGroup, healthGroup, DeadLettersHttp.layer, AuthHttp.layer])
    )
  )
)
