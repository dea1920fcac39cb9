/**
 * `GET /order/{order_uid}`, answered in one place. The HTTP server calls it below the router for
 * every such request (src/http/HttpServer.ts: a cache hit is answered without running an Effect);
 * the `getOrder` handler of the HttpApi calls it too, so the two cannot answer differently — same
 * status, headers and bytes.
 */
import type { SqlError } from "@effect/sql/SqlError"
import { Cause, Effect, Either, Exit, Option, ParseResult, Schema } from "effect"
import { type CachedOrder, OrderCache } from "../cache/OrderCache.ts"
import { OrderUid } from "../orders/Order.ts"
import { Orders } from "../orders/Orders.ts"
import { InvalidOrderUid, OrderNotFound, Unavailable } from "./Api.ts"

/** An answer, security headers aside (the server adds those to every response). */
export interface OrderAnswer {
  readonly status: 200 | 304 | 400 | 404 | 503
  /** Names and values in turn, as `writeHead` takes them. */
  readonly headers: ReadonlyArray<string>
  readonly body: string | undefined
}

/** Orders do not change once stored; a client may reuse one briefly and revalidate with the ETag. */
export const ORDER_CACHE_CONTROL = "private, max-age=60"

const decodeUid = Schema.decodeUnknownEither(OrderUid)

/** The reason an id cannot be an order id, or none. */
export const orderUidProblem = (uid: string): Option.Option<string> =>
  Either.match(decodeUid(uid), {
    onLeft: (e) =>
      Option.some(`order_uid ${ParseResult.ArrayFormatter.formatErrorSync(e)[0]?.message ?? "is invalid"}`),
    onRight: () => Option.none()
  })

const json = (status: OrderAnswer["status"], value: unknown): OrderAnswer => {
  const body = JSON.stringify(value)
  return {
    status,
    headers: ["content-type", "application/json", "content-length", String(Buffer.byteLength(body))],
    body
  }
}

const found = (order: CachedOrder, ifNoneMatch: string | undefined): OrderAnswer =>
  ifNoneMatch === order.etag
    ? { status: 304, headers: ["etag", order.etag, "cache-control", ORDER_CACHE_CONTROL], body: undefined }
    : {
        status: 200,
        headers: [
          "content-type",
          "application/json",
          "content-length",
          String(order.bytes),
          "etag",
          order.etag,
          "cache-control",
          ORDER_CACHE_CONTROL
        ],
        body: order.json
      }

const encodeInvalid = Schema.encodeSync(InvalidOrderUid)
const encodeNotFound = Schema.encodeSync(OrderNotFound)
const encodeUnavailable = Schema.encodeSync(Unavailable)

export const invalidOrderUid = (message: string): OrderAnswer =>
  json(400, encodeInvalid(new InvalidOrderUid({ message })))

const notFound = (uid: string): OrderAnswer =>
  json(404, encodeNotFound(new OrderNotFound({ order_uid: uid })))

const unavailable = json(
  503,
  encodeUnavailable(new Unavailable({ message: "the database cannot be reached" }))
)

/** The id from the path segment as it arrived (percent-encoded), or the 400 for one that is not UTF-8. */
export const uidFromPath = (segment: string): Either.Either<string, OrderAnswer> => {
  try {
    return Either.right(decodeURIComponent(segment))
  } catch {
    return Either.left(invalidOrderUid("order_uid is not valid percent-encoded UTF-8"))
  }
}

export class OrderRoute extends Effect.Service<OrderRoute>()("OrderRoute", {
  effect: Effect.gen(function* () {
    const orders = yield* Orders
    const cache = yield* OrderCache

    /**
     * What needs no waiting: a cache hit, or an id that cannot be one. Undefined: ask
     * `answerMissed`. Only valid ids are ever cached, so a hit needs no check. A miss is not
     * counted here: `answerMissed` counts it, so that a bad id counts none.
     */
    const answerNow = (uid: string, ifNoneMatch: string | undefined): OrderAnswer | undefined => {
      const hit = cache.unsafeGet(uid, { countMiss: false })
      if (Option.isSome(hit)) return found(hit.value, ifNoneMatch)
      const problem = orderUidProblem(uid)
      return Option.isSome(problem) ? invalidOrderUid(problem.value) : undefined
    }

    /** The answer for what the database said; a failure to read it is a 503, a defect stays one. */
    const answerOf = (
      uid: string,
      ifNoneMatch: string | undefined,
      read: Exit.Exit<Option.Option<CachedOrder>, SqlError>
    ): Exit.Exit<OrderAnswer> => {
      if (Exit.isSuccess(read))
        return Exit.succeed(Option.isSome(read.value) ? found(read.value.value, ifNoneMatch) : notFound(uid))
      return Option.isSome(Cause.failureOption(read.cause))
        ? Exit.succeed(unavailable)
        : Exit.failCause(Cause.stripFailures(read.cause))
    }

    /**
     * What `answerNow` could not answer: the order from the database (which fills the cache).
     * `done` is called once, without an Effect per request: a miss costs its share of a batched
     * read (see `Orders.unsafeGet`). The exit fails only with a defect.
     */
    const answerMissed = (
      uid: string,
      ifNoneMatch: string | undefined,
      done: (answer: Exit.Exit<OrderAnswer>) => void
    ) => orders.unsafeGet(uid, (read) => done(answerOf(uid, ifNoneMatch, read)))

    /** The answer for `uid`: from the cache, else from the database. */
    const answer = (uid: string, ifNoneMatch: string | undefined): Effect.Effect<OrderAnswer> =>
      Effect.suspend(() => {
        const now = answerNow(uid, ifNoneMatch)
        return now !== undefined
          ? Effect.succeed(now)
          : Effect.async<OrderAnswer>((resume) => answerMissed(uid, ifNoneMatch, resume))
      })

    return { answerNow, answerMissed, answer } as const
  })
}) {}
