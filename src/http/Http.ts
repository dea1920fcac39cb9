/**
 * Handlers of the HTTP API, the extra routes (metrics, static files) and the app built from them.
 */
import { HttpApiBuilder, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { Duration, Effect, Either, Layer, Option, ParseResult, Schema } from "effect"
import { OrderCache } from "../cache/OrderCache.ts"
import { IngestStatus } from "../ingest/IngestStatus.ts"
import { OrderUid } from "../orders/Order.ts"
import { OrderRepository } from "../orders/OrderRepository.ts"
import { Orders } from "../orders/Orders.ts"
import { Prometheus } from "../observability/Prometheus.ts"
import {
  InvalidOrderUid,
  InvalidQuery,
  NotReady,
  OrderNotFound,
  OrderServiceApi,
  Ready,
  Unavailable
} from "./Api.ts"
import { ApiDocsLive } from "./ApiDocs.ts"
import * as DeadLettersHttp from "./DeadLettersHttp.ts"
import { serveStaticFile, StaticFiles } from "./StaticFiles.ts"

const decodeUid = Schema.decodeUnknownEither(OrderUid)

/** The reason an id cannot be an order id, or none. */
export const orderUidProblem = (uid: string): Option.Option<string> =>
  Either.match(decodeUid(uid), {
    onLeft: (e) =>
      Option.some(`order_uid ${ParseResult.ArrayFormatter.formatErrorSync(e)[0]?.message ?? "is invalid"}`),
    onRight: () => Option.none()
  })

/** Headers of an order response; shared with the server's fast path so both answer alike. */
/** Orders do not change once stored; a client may reuse one briefly and revalidate with the ETag. */
export const ORDER_CACHE_CONTROL = "private, max-age=60"

export const orderHeaders = (etag: string) => ({ etag, "cache-control": ORDER_CACHE_CONTROL })

const unavailable = (message: string) => new Unavailable({ error: "unavailable", message })

export const OrdersHttpLive = HttpApiBuilder.group(OrderServiceApi, "orders", (handlers) =>
  Effect.gen(function* () {
    const orders = yield* Orders
    return handlers
      .handle("getOrder", ({ path }) =>
        Effect.gen(function* () {
          const uid = path.order_uid
          const problem = orderUidProblem(uid)
          if (Option.isSome(problem)) {
            return yield* Effect.fail(
              new InvalidOrderUid({ error: "invalid_order_uid", message: problem.value })
            )
          }
          const found = yield* orders
            .get(uid)
            .pipe(
              Effect.catchTag("SqlError", () => Effect.fail(unavailable("the database cannot be reached")))
            )
          if (Option.isNone(found)) {
            return yield* Effect.fail(new OrderNotFound({ error: "order_not_found", order_uid: uid }))
          }
          const request = yield* HttpServerRequest.HttpServerRequest
          const headers = orderHeaders(found.value.etag)
          if (request.headers["if-none-match"] === found.value.etag) {
            return HttpServerResponse.empty({ status: 304, headers })
          }
          return HttpServerResponse.text(found.value.json, { contentType: "application/json", headers })
        })
      )
      .handle("listOrders", ({ urlParams }) =>
        Effect.gen(function* () {
          const limit = urlParams.limit === undefined ? 20 : Number(urlParams.limit)
          if (!Number.isInteger(limit) || limit < 1 || limit > 100) {
            return yield* Effect.fail(
              new InvalidQuery({
                error: "invalid_query",
                message: "limit must be a whole number from 1 to 100"
              })
            )
          }
          const page = yield* orders.listRecent(limit, Option.fromNullable(urlParams.cursor)).pipe(
            Effect.catchTags({
              InvalidCursor: (e) =>
                Effect.fail(new InvalidQuery({ error: "invalid_query", message: e.message })),
              SqlError: () => Effect.fail(unavailable("the database cannot be reached"))
            })
          )
          return { items: page.items, next_cursor: Option.getOrNull(page.nextCursor) }
        })
      )
  })
)

export const HealthHttpLive = HttpApiBuilder.group(OrderServiceApi, "health", (handlers) =>
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
export const ExtraRoutesLive = HttpApiBuilder.Router.use((router) =>
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
export const HttpAppLive = Layer.mergeAll(
  HttpApiBuilder.middlewareOpenApi({ path: "/openapi.json" }),
  ApiDocsLive,
  ExtraRoutesLive
).pipe(
  Layer.provideMerge(
    HttpApiBuilder.api(OrderServiceApi).pipe(
      Layer.provide([OrdersHttpLive, HealthHttpLive, DeadLettersHttp.layer])
    )
  )
)
