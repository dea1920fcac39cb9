/**
 * Why a message was not stored: the kinds a rejection can have, named once. They travel to the
 * dead-letter topic in the `dlq.error.kind` header and label the parked-message metrics.
 */
import { Schema } from "effect"

/** Kinds the decoder gives, from the message's bytes alone. */
export const DecodeRejectionKinds = ["invalid_json", "schema", "business_rule", "too_large"] as const

export const RejectionKinds = [
  ...DecodeRejectionKinds,
  /** A different order is already stored under the same `order_uid`. */
  "conflict",
  /** Handling the message failed in a way no rule describes (an exception, a defect): set aside. */
  "unprocessable"
] as const

export type DecodeRejectionKind = (typeof DecodeRejectionKinds)[number]
export type RejectionKind = (typeof RejectionKinds)[number]
export const RejectionKind = Schema.Literal(...RejectionKinds)

/** Longest reason we put in a header or a log line; longer ones end in "…". */
export const MAX_DETAIL_LENGTH = 2000

export const boundDetail = (text: string, max: number = MAX_DETAIL_LENGTH): string =>
  text.length > max ? `${text.slice(0, max - 1)}…` : text

/**
 * Words for a failure nobody foresaw, from whatever was thrown: its message, bounded. Never throws
 * itself (a thrown value's `message` getter or `toString` may).
 */
export const describeFailure = (thrown: unknown): string => {
  let text: string
  try {
    if (thrown instanceof Error) text = `${thrown.name}: ${thrown.message}`
    else if (typeof thrown === "string") text = thrown
    else text = Object.prototype.toString.call(thrown)
  } catch {
    text = "an error that could not be described"
  }
  return boundDetail(`the service could not process the message: ${text}`, 500)
}
