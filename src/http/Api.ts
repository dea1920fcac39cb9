/**
 * The HTTP API, declared once: the handlers, the OpenAPI document and typed clients derive from it.
 */
import { HttpApi, HttpApiEndpoint, HttpApiGroup, HttpApiSchema, OpenApi } from "@effect/platform"
import { Schema } from "effect"
import { Order, ORDER_UID_MAX_LENGTH } from "../orders/Order.ts"
import { OrderSummary } from "../orders/OrderRepository.ts"

/**
 * The `error` field every error body carries (`{"error":"order_not_found",…}`, the HTTP contract),
 * filled in by the constructor: `new OrderNotFound({ order_uid })`.
 */
const errorCode = <const Code extends string>(code: Code) =>
  Schema.Literal(code).pipe(
    Schema.propertySignature,
    Schema.withConstructorDefault(() => code)
  )

export class OrderNotFound extends Schema.TaggedError<OrderNotFound>()(
  "OrderNotFound",
  { error: errorCode("order_not_found"), order_uid: Schema.String },
  HttpApiSchema.annotations({ status: 404, description: "No order is stored under this id" })
) {}

export class InvalidOrderUid extends Schema.TaggedError<InvalidOrderUid>()(
  "InvalidOrderUid",
  { error: errorCode("invalid_order_uid"), message: Schema.String },
  HttpApiSchema.annotations({
    status: 400,
    description: `The id cannot be an order id: empty, longer than ${ORDER_UID_MAX_LENGTH} characters, or with control characters`
  })
) {}

export class InvalidQuery extends Schema.TaggedError<InvalidQuery>()(
  "InvalidQuery",
  { error: errorCode("invalid_query"), message: Schema.String },
  HttpApiSchema.annotations({ status: 400, description: "A query parameter is out of range or malformed" })
) {}

export class Unavailable extends Schema.TaggedError<Unavailable>()(
  "Unavailable",
  { error: errorCode("unavailable"), message: Schema.String },
  HttpApiSchema.annotations({
    status: 503,
    description: "The database cannot be reached right now; try again"
  })
) {}

export const RecentOrdersPage = Schema.Struct({
  items: Schema.Array(OrderSummary),
  next_cursor: Schema.NullOr(Schema.String).annotations({
    description: "Pass as `cursor` for the next page; null on the last page"
  })
}).annotations({ identifier: "RecentOrdersPage" })

export const SEARCH_QUERY_MAX_LENGTH = 256

/** An SSE event as the live feed writes it; the schema only describes the stream for the document. */
export const LiveEvents = HttpApiSchema.Text({ contentType: "text/event-stream" }).annotations({
  description:
    "Server-sent events. `order` (one per newly stored order, on every instance): `id` is the order's " +
    "database-wide sequence number, `data` its summary as in `/orders`. A comment line every 15 seconds " +
    "keeps the connection open. `gap`: the `Last-Event-ID` given is no longer (or not yet) in the " +
    "short window kept for resuming, so orders may have been missed — reload the list. `dropped` " +
    "(then the stream ends): the client did not read fast enough and was let go; reconnect and reload."
})

export class OrdersGroup extends HttpApiGroup.make("orders")
  .add(
    HttpApiEndpoint.get("getOrder", "/order/:order_uid")
      .setPath(Schema.Struct({ order_uid: Schema.String }))
      .addSuccess(Order)
      .addError(InvalidOrderUid)
      .addError(OrderNotFound)
      .addError(Unavailable)
      .annotate(OpenApi.Summary, "One order, in the shape it was received")
      .annotate(
        OpenApi.Description,
        "Answers with a strong `ETag`; send it back in `If-None-Match` to get `304 Not Modified`."
      )
  )
  .add(
    HttpApiEndpoint.get("listOrders", "/orders")
      .setUrlParams(
        Schema.Struct({
          limit: Schema.optional(Schema.String).annotations({
            description: "Orders per page, 1–100 (default 20)"
          }),
          cursor: Schema.optional(Schema.String).annotations({
            description: "From the previous page's next_cursor"
          })
        })
      )
      .addSuccess(RecentOrdersPage)
      .addError(InvalidQuery)
      .addError(Unavailable)
      .annotate(OpenApi.Summary, "The most recent orders (by date_created), newest first, a page at a time")
  )
  .add(
    HttpApiEndpoint.get("searchOrders", "/orders/search")
      .setUrlParams(
        Schema.Struct({
          q: Schema.optional(Schema.String).annotations({
            description:
              "An order id, track number, customer id, delivery phone, delivery e-mail, payment transaction " +
              "or item rid, matched exactly after trimming; e-mails ignore case, phones compare digits only " +
              `(+7 900 123-45-67 = 79001234567). At most ${SEARCH_QUERY_MAX_LENGTH} characters.`
          }),
          from: Schema.optional(Schema.String).annotations({
            description: "Only orders with date_created at or after this RFC 3339 instant"
          }),
          to: Schema.optional(Schema.String).annotations({
            description: "Only orders with date_created before this RFC 3339 instant"
          }),
          limit: Schema.optional(Schema.String).annotations({
            description: "Orders per page, 1–100 (default 20)"
          }),
          cursor: Schema.optional(Schema.String).annotations({
            description: "From the previous page's next_cursor"
          })
        })
      )
      .addSuccess(RecentOrdersPage)
      .addError(InvalidQuery)
      .addError(Unavailable)
      .annotate(OpenApi.Summary, "Orders found by what a customer has, newest first, a page at a time")
      .annotate(
        OpenApi.Description,
        "Give `q`, a date range, or both. A bad parameter is a 400 whose message names it and says why."
      )
  )
  .add(
    HttpApiEndpoint.get("liveOrders", "/orders/live")
      .addSuccess(LiveEvents)
      .annotate(OpenApi.Summary, "Newly stored orders as server-sent events, the same on every instance")
      .annotate(
        OpenApi.Description,
        "Send `Last-Event-ID` (browsers do when they reconnect) to resume after that event, within the " +
          "last few thousand orders. Each client has a bounded buffer: one that falls behind is sent a " +
          "`dropped` event and disconnected, never slowing ingestion. When the service shuts down the " +
          "stream ends; reconnect to another instance."
      )
  ) {}

export const ReadinessChecks = Schema.Struct({
  database: Schema.Literal("ok", "unreachable"),
  consumer: Schema.Literal("ok", "stopped"),
  cache: Schema.Literal("ok", "warming")
})

export class Ready extends Schema.Class<Ready>("Ready")({
  status: Schema.Literal("ready"),
  checks: ReadinessChecks
}) {}

export class NotReady extends Schema.TaggedError<NotReady>()(
  "NotReady",
  { status: Schema.Literal("not_ready"), checks: ReadinessChecks },
  HttpApiSchema.annotations({ status: 503, description: "Some part is not ready; `checks` says which" })
) {}

export class HealthGroup extends HttpApiGroup.make("health")
  .add(
    HttpApiEndpoint.get("healthz", "/healthz")
      .addSuccess(Schema.Struct({ status: Schema.Literal("ok") }))
      .annotate(OpenApi.Summary, "The process is alive")
  )
  .add(
    HttpApiEndpoint.get("readyz", "/readyz")
      .addSuccess(Ready)
      .addError(NotReady)
      .annotate(OpenApi.Summary, "The database is reachable, the consumer is running and the cache is warm")
  ) {}

export class OrderServiceApi extends HttpApi.make("order-service")
  .add(OrdersGroup)
  .add(HealthGroup)
  .annotate(OpenApi.Title, "Order service")
  .annotate(OpenApi.Version, "1.0.0")
  .annotate(
    OpenApi.Description,
    "Orders received from Kafka, as stored. Also served: `GET /metrics` (Prometheus text), `GET /openapi.json`, `GET /docs`, and the web page at [`/`](/)."
  ) {}
