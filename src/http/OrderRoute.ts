/**
 * `GET /order/{order_uid}`, answered in one place. The HTTP server calls it below the router for
 * every such request (src/http/HttpServer.ts: a cache hit is answered without running an Effect,
 * a miss from its batched read's callback); the `getOrder` handler of the HttpApi calls it too
 * (`http.fast_paths: false`), so the two cannot answer differently — same status, headers and bytes.
 */
import type { SqlError } from "@effect/sql/SqlError"
import type { ReadQueueFull } from "../db/ClientReads.ts"
import { Cause, Effect, Either, Exit, Option, ParseResult, Schema } from "effect"
import { type CachedOrder, OrderCache } from "../cache/OrderCache.ts"
import { OrderUid } from "../orders/Order.ts"
import { Orders } from "../orders/Orders.ts"
import { type Answer, json } from "./Answer.ts"
import { InvalidOrderUid, OrderNotFound } from "./Api.ts"
import { readFailedAnswer } from "./ReadFailures.ts"

/**
 * An order is a customer's data: no cache keeps it (a shared browser, a proxy). Orders do not
 * change once stored, so a program that keeps its own copy revalidates it with the ETag.
 */
export const ORDER_CACHE_CONTROL = "no-store"

const decodeUid = Schema.decodeUnknownEither(OrderUid)

/** The reason an id cannot be an order id, or none. */
export const orderUidProblem = (uid: string): Option.Option<string> =>
  Either.match(decodeUid(uid), {
    onLeft: (e) =>
      Option.some(`order_uid ${ParseResult.ArrayFormatter.formatErrorSync(e)[0]?.message ?? "is invalid"}`),
    onRight: () => Option.none()
  })

const found = (order: CachedOrder, ifNoneMatch: string | undefined): Answer =>
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

export const invalidOrderUid = (message: string): Answer =>
  json(400, encodeInvalid(new InvalidOrderUid({ message })))

const notFound = (uid: string): Answer => json(404, encodeNotFound(new OrderNotFound({ order_uid: uid })))

/** The id from the path segment as it arrived (percent-encoded), or the 400 for one that is not UTF-8. */
export const uidFromPath = (segment: string): Either.Either<string, Answer> => {
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
    const answerNow = (uid: string, ifNoneMatch: string | undefined): Answer | undefined => {
      const hit = cache.unsafeGet(uid, { countMiss: false })
      if (Option.isSome(hit)) return found(hit.value, ifNoneMatch)
      const problem = orderUidProblem(uid)
      return Option.isSome(problem) ? invalidOrderUid(problem.value) : undefined
    }

    /**
     * The answer for what the database said; a failure to read it (refused, too slow, out of
     * reach) is a 503 (see ReadFailures), a defect stays one.
     */
    const answerOf = (
      uid: string,
      ifNoneMatch: string | undefined,
      read: Exit.Exit<Option.Option<CachedOrder>, SqlError | ReadQueueFull>
    ): Exit.Exit<Answer> => {
      if (Exit.isSuccess(read))
        return Exit.succeed(Option.isSome(read.value) ? found(read.value.value, ifNoneMatch) : notFound(uid))
      const failure = Cause.failureOption(read.cause)
      return Option.isSome(failure)
        ? Exit.succeed(readFailedAnswer(failure.value))
        : Exit.failCause(Cause.stripFailures(read.cause))
    }

    /**
     * What `answerNow` could not answer: the order from the database (which fills the cache).
     * `done` is called once, with an exit that fails only with a defect. A callback, not an
     * Effect: the fast path answers a miss without a fiber of its own (see `Orders.unsafeGet`).
     */
    const answerMissed = (
      uid: string,
      ifNoneMatch: string | undefined,
      done: (answer: Exit.Exit<Answer>) => void
    ): void => orders.unsafeGet(uid, (read) => done(answerOf(uid, ifNoneMatch, read)))

    return { answerNow, answerMissed } as const
  })
}) {}
