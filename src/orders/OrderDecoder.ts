/**
 * From the bytes of a Kafka message to an `Order` or a typed rejection that says why, in words a
 * person can act on ("payment.amount: Expected number, actual \"1817\"").
 */
import { Data, Either, Option, ParseResult, Schema } from "effect"
import { compileDecoder } from "./CompiledDecoder.ts"
import { exceedsJsonBounds, ORDER_JSON_BOUNDS } from "./JsonBounds.ts"
import { Order, orderFieldsSchema, type OrderJson } from "./Order.ts"
import { boundDetail, describeFailure, type DecodeRejectionKind } from "./Rejection.ts"

export class OrderRejected extends Data.TaggedError("OrderRejected")<{
  /** `unprocessable` when decoding itself failed: the message is set aside, not judged. */
  readonly kind: DecodeRejectionKind | "unprocessable"
  /** Human-readable reason; bounded so it fits a Kafka header. */
  readonly detail: string
}> {
  override get message() {
    return `${this.kind}: ${this.detail}`
  }
}

/** At most this many problems are listed in one rejection; the rest are counted. */
const MAX_LISTED_PROBLEMS = 10

const decodeOrder = Schema.decodeUnknownEither(Order, { errors: "all", onExcessProperty: "ignore" })
const decodeFields = Schema.decodeUnknownEither(orderFieldsSchema, { onExcessProperty: "ignore" })
const encodeOrder = Schema.encodeSync(Order)
/** The same decoding, compiled: most messages are valid, and only a rejection needs the reasons. */
const decodeValid = compileDecoder(Order)

const formatPath = (path: ReadonlyArray<PropertyKey>): string =>
  path.reduce<string>(
    (acc, key) =>
      typeof key === "number" ? `${acc}[${key}]` : acc === "" ? String(key) : `${acc}.${String(key)}`,
    ""
  )

const describe = (error: ParseResult.ParseError): string => {
  const issues = ParseResult.ArrayFormatter.formatErrorSync(error)
  const listed = issues
    .slice(0, MAX_LISTED_PROBLEMS)
    .map((i) => (i.path.length === 0 ? i.message : `${formatPath(i.path)}: ${i.message}`))
  const more =
    issues.length > MAX_LISTED_PROBLEMS ? [`… and ${issues.length - MAX_LISTED_PROBLEMS} more`] : []
  return boundDetail([...listed, ...more].join("; "))
}

const reject = (kind: OrderRejected["kind"], detail: string) =>
  Either.left(new OrderRejected({ kind, detail }))

/** Decode an already-parsed JSON value. */
export const decodeOrderValue = (value: unknown): Either.Either<Order, OrderRejected> => {
  const fast = decodeValid?.(value)
  if (fast !== undefined && Option.isSome(fast)) return Either.right(fast.value)
  const decoded = decodeOrder(value)
  if (Either.isRight(decoded)) return Either.right(decoded.right)
  // Only on the failure path: a value whose fields are well-typed broke a business rule.
  const kind: DecodeRejectionKind = Either.isRight(decodeFields(value)) ? "business_rule" : "schema"
  return reject(kind, describe(decoded.left))
}

const utf8 = new TextDecoder("utf-8", { fatal: true })

/**
 * Decode a message value. The work one message can cause is bounded before it is done: a message
 * larger than `maxBytes` is refused unread, and one whose JSON nests deeper, or has longer arrays,
 * strings or more keys than an order can (`ORDER_JSON_BOUNDS`), is refused before it is parsed.
 * Never throws: whatever goes wrong while decoding is an `unprocessable` rejection.
 */
export const decodeOrderBytes = (
  bytes: Uint8Array | null | undefined,
  maxBytes: number
): Either.Either<Order, OrderRejected> => {
  try {
    return decodeBounded(bytes, maxBytes)
  } catch (thrown) {
    return reject("unprocessable", describeFailure(thrown))
  }
}

const decodeBounded = (
  bytes: Uint8Array | null | undefined,
  maxBytes: number
): Either.Either<Order, OrderRejected> => {
  if (bytes == null) return reject("invalid_json", "the message has no value")
  if (bytes.byteLength > maxBytes) {
    return reject("too_large", `the message is ${bytes.byteLength} bytes; the limit is ${maxBytes} bytes`)
  }
  let text: string
  try {
    text = utf8.decode(bytes)
  } catch {
    return reject("invalid_json", "the message is not valid UTF-8")
  }
  const beyond = exceedsJsonBounds(text, ORDER_JSON_BOUNDS)
  if (beyond !== undefined) return reject("schema", `no order looks like this: ${beyond}`)
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (e) {
    return reject("invalid_json", `the message is not JSON: ${(e as Error).message}`)
  }
  return decodeOrderValue(value)
}

/** The order as JSON-ready data in the model's shape and field order. */
export const orderToJson = (order: Order): OrderJson => encodeOrder(order)

/** An order is immutable: the ingest path serialises it for the database and again for the cache. */
const serialised = new WeakMap<Order, string>()

/**
 * The order as a JSON string in the model's field order; the same order always gives the same
 * string. An `Order` holds exactly the model's fields, in order, with nothing to transform, so it
 * serialises as it is — no second pass through the schema on the ingest path (a property test
 * holds this equal to the schema's encoding).
 */
export const orderToJsonString = (order: Order): string => {
  let json = serialised.get(order)
  if (json === undefined) {
    json = JSON.stringify(order)
    serialised.set(order, json)
  }
  return json
}
