/**
 * The HTTP API, declared once: the handlers, the OpenAPI document and typed clients derive from it.
 */
import { HttpApi, HttpApiEndpoint, HttpApiGroup, HttpApiSchema, OpenApi } from "@effect/platform"
import { Option, Schema } from "effect"
import {
  COUNTS_CAP,
  DeadLetterDetail,
  DeadLetterSummary,
  EncodedBytes
} from "../deadletters/DeadLetterIndex.ts"
import { Order, ORDER_UID_MAX_LENGTH, Timestamp } from "../orders/Order.ts"
import { OrderSummary } from "../orders/OrderRepository.ts"
import { RejectionKind, RejectionKinds } from "../orders/Rejection.ts"

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

/**
 * 503: a bound was reached and the request was refused at once rather than held (e.g. too many
 * reads already waiting for the database). Answered with `Retry-After`.
 */
export class Overloaded extends Schema.TaggedError<Overloaded>()(
  "Overloaded",
  {
    error: errorCode("overloaded"),
    message: Schema.String,
    limit: Schema.optional(Schema.String).annotations({ description: "The configuration key of the bound" })
  },
  HttpApiSchema.annotations({
    status: 503,
    description:
      "The service is at one of its bounds and refused this at once; retry after `Retry-After` seconds"
  })
) {}

/** 401: the route needs a role and the request carries no credentials, or ones that do not hold. */
export class Unauthorized extends Schema.TaggedError<Unauthorized>()(
  "Unauthorized",
  { error: errorCode("unauthorized"), message: Schema.String },
  HttpApiSchema.annotations({
    status: 401,
    description:
      "Sign in (the page), or send `Authorization: Bearer <token>`: an access token of the OpenID provider or an API key"
  })
) {}

/** 403: the caller is known but lacks the role, or a page's request came from another site. */
export class Forbidden extends Schema.TaggedError<Forbidden>()(
  "Forbidden",
  {
    error: errorCode("forbidden"),
    message: Schema.String,
    required_role: Schema.NullOr(Schema.Literal("agent", "operator", "metrics"))
  },
  HttpApiSchema.annotations({
    status: 403,
    description: "The caller's roles do not include the one this needs"
  })
) {}

/** `limit` and `cursor` as text, checked by the handler (the dead letters' listing). */
const pageParams = (things: string, max: number, byDefault: number) => ({
  limit: Schema.optional(Schema.String).annotations({
    description: `${things} per page, 1–${max} (default ${byDefault})`
  }),
  cursor: Schema.optional(Schema.String).annotations({ description: "From the previous page's next_cursor" })
})

export const RecentOrdersPage = Schema.Struct({
  items: Schema.Array(OrderSummary),
  next_cursor: Schema.NullOr(Schema.String).annotations({
    description: "Pass as `cursor` for the next page; null on the last page"
  })
}).annotations({ identifier: "RecentOrdersPage" })

export const SEARCH_QUERY_MAX_LENGTH = 256

/** Orders a page holds when `limit` is not given. */
export const DEFAULT_PAGE_LIMIT = 20

// The query parameters of the orders' listings, as the API checks them: a parameter that does not
// decode is a 400 `InvalidQuery` whose message names it (see `Http.ts`), a parameter given twice
// included.

/** A query parameter's text, given once (twice arrives as a list). */
const givenOnce = (name: string, description: string) =>
  Schema.String.annotations({ description, message: () => `${name} must be given once` })

/** A parameter read after trimming, where blank is the same as not given. */
const trimmedParam = <A>(name: string, description: string, value: Schema.Schema<A, string>) =>
  Schema.optionalToOptional(givenOnce(name, description), value, {
    decode: (given) =>
      Option.filter(
        Option.map(given, (s) => s.trim()),
        (s) => s !== ""
      ),
    encode: (value) => value
  })

// eslint-disable-next-line no-control-regex
const CONTROL_CHARACTERS = /[\u0000-\u001f\u007f-\u009f]/

/** What a search looks for, as typed (trimmed): bounded, printable. */
const SearchText = Schema.String.pipe(
  Schema.filter(
    (q) =>
      q.length <= SEARCH_QUERY_MAX_LENGTH ||
      `q must be at most ${SEARCH_QUERY_MAX_LENGTH} characters; it has ${q.length}`
  ),
  Schema.filter(
    (q) =>
      !CONTROL_CHARACTERS.test(q) || "q must not contain control characters (a tab, line break or similar)"
  )
)

/** A date bound of a search: an RFC 3339 instant with its zone. */
const DateBound = (name: string) =>
  Timestamp.annotations({
    message: (issue) => ({
      message: `${name} must be an RFC 3339 timestamp with a zone, such as 2021-11-26T06:22:19Z; got ${JSON.stringify(String(issue.actual).slice(0, 64))}`,
      override: true
    })
  })

/** `limit` as the orders' listings take it: a whole number from 1 to 100. */
const PageLimit = Schema.NumberFromString.pipe(Schema.int(), Schema.between(1, 100)).annotations({
  message: () => ({ message: "limit must be a whole number from 1 to 100", override: true })
})

/** `limit` and `cursor` of the orders' listings. */
const OrderPageParams = {
  limit: Schema.optional(
    Schema.compose(givenOnce("limit", `Orders per page, 1–100 (default ${DEFAULT_PAGE_LIMIT})`), PageLimit)
  ),
  cursor: Schema.optional(givenOnce("cursor", "From the previous page's next_cursor"))
}

export const RecentOrdersParams = Schema.Struct(OrderPageParams)

export const SearchParams = Schema.Struct({
  q: trimmedParam(
    "q",
    "An order id, track number, customer id, delivery phone, delivery e-mail, payment transaction " +
      "or item rid, matched exactly after trimming; e-mails ignore case, phones compare digits only " +
      `(+7 900 123-45-67 = 79001234567). At most ${SEARCH_QUERY_MAX_LENGTH} characters.`,
    SearchText
  ),
  from: trimmedParam(
    "from",
    "Only orders with date_created at or after this RFC 3339 instant",
    DateBound("from")
  ),
  to: trimmedParam("to", "Only orders with date_created before this RFC 3339 instant", DateBound("to")),
  ...OrderPageParams
}).pipe(
  Schema.filter((params) =>
    params.q === undefined && params.from === undefined && params.to === undefined
      ? "give q (what to look for), from or to"
      : params.from === undefined ||
          params.to === undefined ||
          Date.parse(params.from) < Date.parse(params.to)
        ? true
        : "from must be before to"
  )
)

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
  .addError(Unauthorized)
  .addError(Forbidden)
  .add(
    HttpApiEndpoint.get("getOrder", "/order/:order_uid")
      .setPath(Schema.Struct({ order_uid: Schema.String }))
      .addSuccess(Order)
      .addError(InvalidOrderUid)
      .addError(OrderNotFound)
      .addError(Unavailable)
      .addError(Overloaded)
      .annotate(OpenApi.Summary, "One order, in the shape it was received")
      .annotate(
        OpenApi.Description,
        "Answers with a strong `ETag`; send it back in `If-None-Match` to get `304 Not Modified`."
      )
  )
  .add(
    HttpApiEndpoint.get("listOrders", "/orders")
      .setUrlParams(RecentOrdersParams)
      .addSuccess(RecentOrdersPage)
      .addError(InvalidQuery)
      .addError(Unavailable)
      .addError(Overloaded)
      .annotate(OpenApi.Summary, "The most recent orders (by date_created), newest first, a page at a time")
  )
  .add(
    HttpApiEndpoint.get("searchOrders", "/orders/search")
      .setUrlParams(SearchParams)
      .addSuccess(RecentOrdersPage)
      .addError(InvalidQuery)
      .addError(Unavailable)
      .addError(Overloaded)
      .annotate(OpenApi.Summary, "Orders found by what a customer has, newest first, a page at a time")
      .annotate(
        OpenApi.Description,
        "Give `q`, a date range, or both. A bad parameter is a 400 whose message names it and says why."
      )
  )
  .add(
    HttpApiEndpoint.get("liveOrders", "/orders/live")
      .addSuccess(LiveEvents)
      .addError(Overloaded)
      .annotate(OpenApi.Summary, "Newly stored orders as server-sent events, the same on every instance")
      .annotate(
        OpenApi.Description,
        "Send `Last-Event-ID` (browsers do when they reconnect) to resume after that event, within the " +
          "last few thousand orders. Each client has a bounded buffer: one that falls behind is sent a " +
          "`dropped` event and disconnected, never slowing ingestion. When the service shuts down the " +
          "stream ends; reconnect to another instance. With `Accept-Encoding: gzip` (browsers send it) " +
          "the stream is gzip-compressed."
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

export class DeadLetterNotFound extends Schema.TaggedError<DeadLetterNotFound>()(
  "DeadLetterNotFound",
  { error: errorCode("dead_letter_not_found"), partition: Schema.Number, offset: Schema.String },
  HttpApiSchema.annotations({
    status: 404,
    description: "No dead letter is indexed at this partition and offset"
  })
) {}

const timeParam = (description: string) =>
  Schema.optional(Schema.String).annotations({
    description: `${description} (ISO 8601, e.g. 2026-11-30T08:00:00Z)`
  })

export const DeadLetterPage = Schema.Struct({
  items: Schema.Array(DeadLetterSummary),
  counts: Schema.Record({ key: Schema.String, value: Schema.Number }).annotations({
    description: `Letters by kind over the time range asked for (every kind, whatever \`kind\` is). Over a range, a kind's count stops at ${COUNTS_CAP}: see counts_capped`
  }),
  counts_capped: Schema.Boolean.annotations({
    description: `True when a kind's count over the range stopped at the cap (${COUNTS_CAP}): such a count means ${COUNTS_CAP} or more. Never over all time (no since or until), whose counts are exact`
  }),
  next_cursor: Schema.NullOr(Schema.String).annotations({
    description: "Pass as `cursor` for the next page; null on the last page"
  })
}).annotations({ identifier: "DeadLetterPage" })

export const ReplayRequest = Schema.Struct({
  kind: Schema.optional(RejectionKind),
  since: timeParam("Letters parked at or after this time"),
  until: timeParam("Letters parked before this time"),
  partition: Schema.optional(Schema.Int.pipe(Schema.nonNegative())).annotations({
    description: "With offset: the one letter at this place on the dead-letter topic"
  }),
  offset: Schema.optional(Schema.String.pipe(Schema.pattern(/^\d{1,19}$/))),
  dry_run: Schema.optional(Schema.Boolean).annotations({
    description: "Say what would be sent; send nothing"
  }),
  limit: Schema.optional(Schema.Int.pipe(Schema.between(1, 1000))).annotations({
    description: "Letters per call, oldest first (default 500); next_cursor leads to the rest"
  }),
  cursor: Schema.optional(Schema.String).annotations({
    description:
      "From the previous call's next_cursor; it keeps the `until` the first call fixed (a later `until` is not used)"
  }),
  include_replayed: Schema.optional(Schema.Boolean).annotations({
    description:
      "Take letters replayed before as well (default false: only letters never replayed). A letter named by partition and offset is always taken"
  })
}).annotations({ identifier: "ReplayRequest" })

export const ReplayResponse = Schema.Struct({
  dry_run: Schema.Boolean,
  selected: Schema.NullOr(Schema.Number).annotations({
    description:
      "Letters the selection takes in, over all its pages; given on the first page (no cursor), null after"
  }),
  already_replayed: Schema.NullOr(Schema.Number).annotations({
    description:
      "Letters of the selection replayed before: left out unless include_replayed; given on the first page, null after"
  }),
  until: Schema.NullOr(Schema.String).annotations({
    description:
      "The selection's end (ISO 8601, exclusive): the `until` given, else when the first page was asked for; every page keeps it. Null for one letter"
  }),
  sent: Schema.Number,
  failed: Schema.Number.annotations({
    description: "Letters the broker refused (e.g. larger than the topic allows); they may be replayed again"
  }),
  letters: Schema.Array(
    Schema.Struct({
      partition: Schema.Number,
      offset: Schema.String,
      kind: Schema.String,
      key: Schema.NullOr(EncodedBytes),
      outcome: Schema.Literal("sent", "failed", "dry_run")
    })
  ),
  next_cursor: Schema.NullOr(Schema.String).annotations({
    description: "Pass as `cursor` (with the same selection) for the next page; null when done"
  })
}).annotations({ identifier: "ReplayResponse" })

export class IdempotencyKeyReused extends Schema.TaggedError<IdempotencyKeyReused>()(
  "IdempotencyKeyReused",
  { error: errorCode("idempotency_key_reused"), message: Schema.String },
  HttpApiSchema.annotations({
    status: 422,
    description: "This Idempotency-Key was sent with another request body within the last 24 hours"
  })
) {}

export class IdempotencyKeyInUse extends Schema.TaggedError<IdempotencyKeyInUse>()(
  "IdempotencyKeyInUse",
  { error: errorCode("idempotency_key_in_use"), message: Schema.String },
  HttpApiSchema.annotations({
    status: 409,
    description: "A request with this Idempotency-Key is still running; send it again shortly for its answer"
  })
) {}

export class DeadLettersGroup extends HttpApiGroup.make("deadLetters")
  .addError(Unauthorized)
  .addError(Forbidden)
  .add(
    HttpApiEndpoint.get("listDeadLetters", "/dead-letters")
      .setUrlParams(
        Schema.Struct({
          kind: Schema.optional(Schema.String).annotations({ description: RejectionKinds.join(", ") }),
          since: timeParam("Letters parked at or after this time"),
          until: timeParam("Letters parked before this time"),
          ...pageParams("Letters", 200, 50)
        })
      )
      .addSuccess(DeadLetterPage)
      .addError(InvalidQuery)
      .addError(Unavailable)
      .addError(Overloaded)
      .annotate(OpenApi.Summary, "Parked messages, newest first, a page at a time, with counts by kind")
      .annotate(
        OpenApi.Description,
        "Read from the service's index of the dead-letter topic (committed letters only). A browser asking for HTML (`Accept: text/html`) gets the dead-letters page instead."
      )
  )
  .add(
    HttpApiEndpoint.get("getDeadLetter", "/dead-letters/:partition/:offset")
      .setPath(Schema.Struct({ partition: Schema.String, offset: Schema.String }))
      .addSuccess(DeadLetterDetail)
      .addError(InvalidQuery)
      .addError(DeadLetterNotFound)
      .addError(Unavailable)
      .addError(Overloaded)
      .annotate(OpenApi.Summary, "One parked message with its original bytes and every header")
  )
  .add(
    HttpApiEndpoint.post("replayDeadLetters", "/dead-letters/replay")
      .setPayload(ReplayRequest)
      .setHeaders(
        Schema.Struct({
          "idempotency-key": Schema.optional(Schema.String).annotations({
            description:
              "At most 200 characters. The same key with the same body within 24 hours answers what the first request was answered and sends nothing; with another body it is 422"
          })
        })
      )
      .addSuccess(ReplayResponse)
      .addError(InvalidQuery)
      .addError(IdempotencyKeyInUse)
      .addError(IdempotencyKeyReused)
      .addError(Unavailable)
      .annotate(OpenApi.Summary, "Send parked messages back to the orders topic (a copy; the letters stay)")
      .annotate(
        OpenApi.Description,
        "Re-publishes each selected letter's original key, bytes and headers with `replay.of` (the letter's topic/partition/offset) and `replay.at`. Needs the `operator` role; from the page, only from the service's own origin. Letters go oldest first, a page at a time (at most `limit` letters and `dead_letters.replay_page_bytes` bytes); following `next_cursor` ends, and never takes letters parked after the first page (its own replays parked again among them). A letter is recorded as replayed once the broker takes it and is not taken again unless `include_replayed`; two replays running at once never both send a letter. Safe to repeat: a stored order is stored once, one still invalid is parked again naming its previous letter."
      )
  ) {}

export class SignInOff extends Schema.TaggedError<SignInOff>()(
  "SignInOff",
  { error: errorCode("sign_in_off"), message: Schema.String },
  HttpApiSchema.annotations({
    status: 404,
    description: "No OpenID provider is configured: nobody signs in here"
  })
) {}

export class SignInFailed extends Schema.TaggedError<SignInFailed>()(
  "SignInFailed",
  { error: errorCode("sign_in_failed"), message: Schema.String },
  HttpApiSchema.annotations({
    status: 400,
    description: "The provider's answer could not be used; start again"
  })
) {}

export const Me = Schema.Struct({
  mode: Schema.Literal("required", "none").annotations({
    description: "`none`: no sign-in here, everything is open (one machine)"
  }),
  signed_in: Schema.Boolean,
  subject: Schema.NullOr(Schema.String),
  name: Schema.NullOr(Schema.String),
  roles: Schema.Array(Schema.Literal("agent", "operator", "metrics")),
  sign_in: Schema.Boolean.annotations({
    description: "Whether people can sign in here (a provider is configured)"
  })
}).annotations({ identifier: "Me" })

export class AuthGroup extends HttpApiGroup.make("auth")
  .add(
    HttpApiEndpoint.get("me", "/auth/me")
      .addSuccess(Me)
      .annotate(OpenApi.Summary, "Who the caller is and what they may see (the page asks on load)")
  )
  .add(
    HttpApiEndpoint.get("login", "/auth/login")
      .setUrlParams(
        Schema.Struct({
          return_to: Schema.optional(Schema.String).annotations({
            description: "A path of this service to come back to once signed in (default `/`)"
          })
        })
      )
      .addSuccess(HttpApiSchema.Empty(302))
      .addError(SignInOff)
      .addError(Unavailable)
      .annotate(OpenApi.Summary, "Sign in: off to the OpenID provider (authorization code with PKCE)")
  )
  .add(
    HttpApiEndpoint.get("callback", "/auth/callback")
      .setUrlParams(
        Schema.Struct({ code: Schema.optional(Schema.String), state: Schema.optional(Schema.String) })
      )
      .addSuccess(HttpApiSchema.Empty(303))
      .addError(SignInOff)
      .addError(SignInFailed)
      .addError(Unavailable)
      .annotate(OpenApi.Summary, "Where the provider sends a person back; sets the session cookie")
  )
  .add(
    HttpApiEndpoint.post("logout", "/auth/logout")
      .addSuccess(HttpApiSchema.Text({ contentType: "text/html" }))
      .addError(Forbidden)
      .addError(Unavailable)
      .annotate(OpenApi.Summary, "Sign out: the session ends on every instance, then at the provider")
  ) {}

export class OrderServiceApi extends HttpApi.make("order-service")
  .add(OrdersGroup)
  .add(HealthGroup)
  .add(DeadLettersGroup)
  .add(AuthGroup)
  .annotate(OpenApi.Title, "Order service")
  .annotate(OpenApi.Version, "1.0.0")
  .annotate(
    OpenApi.Description,
    "Orders received from Kafka, as stored. Also served: `GET /metrics` (Prometheus text), `GET /openapi.json`, `GET /docs`, the web page at [`/`](/) and the dead-letters page at [`/dead-letters`](/dead-letters)."
  ) {}
