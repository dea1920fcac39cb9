/**
 * What became of each message of a batch, and what that means for settling it: pure functions, no
 * effects. A message ends exactly one way — stored now, already stored (a redelivery), or parked
 * with a kind and a reason.
 */
import type { KafkaMessage } from "kafkajs"
import { ReplayHeaders } from "../kafka/DeadLetters.ts"
import type { Order } from "../orders/Order.ts"
import type { InsertOutcome } from "../orders/OrderRepository.ts"
import type { RejectionKind } from "../orders/Rejection.ts"

export type MessageOutcome =
  /** Stored by this batch's transaction. */
  | { readonly _tag: "Stored"; readonly order: Order }
  /** The same order was stored before (a redelivery, or sent again): nothing written, acknowledged. */
  | { readonly _tag: "Duplicate"; readonly order: Order }
  /** Not stored: goes to the dead-letter topic with its reason. */
  | { readonly _tag: "Parked"; readonly kind: RejectionKind; readonly detail: string }

export const parked = (kind: RejectionKind, detail: string): MessageOutcome => ({
  _tag: "Parked",
  kind,
  detail
})

const conflictDetail = (uid: string) =>
  `a different order is already stored under order_uid ${JSON.stringify(uid)}; the stored one was kept`

/** The repository's answer for one order, as the message's outcome. */
export const fromInsert = (order: Order, outcome: InsertOutcome): MessageOutcome => {
  switch (outcome) {
    case "inserted":
      return { _tag: "Stored", order }
    case "duplicate":
      return { _tag: "Duplicate", order }
    case "conflict":
      return parked("conflict", conflictDetail(order.order_uid))
  }
}

export interface ParkedMessage {
  readonly message: KafkaMessage
  readonly kind: RejectionKind
  readonly detail: string
}

/** A batch's outcomes, grouped for settling: what to park, what to cache, what to count. */
export interface BatchSummary {
  /** Orders stored by this batch, in the order they arrived. */
  readonly stored: ReadonlyArray<Order>
  /**
   * Orders stored by this batch or found stored already, in the order they arrived: what to cache.
   * A batch whose offsets another instance (or this one, before a rebalance) failed to commit comes
   * back as duplicates; it is cached by whoever commits it, as it would have been the first time.
   */
  readonly toCache: ReadonlyArray<Order>
  readonly duplicates: number
  readonly parked: ReadonlyArray<ParkedMessage>
  /** What became of the replayed messages (a `replay.of` header) among them. */
  readonly replayed: { readonly stored: number; readonly duplicate: number; readonly parked: number }
}

const isReplay = (message: KafkaMessage | undefined) => message?.headers?.[ReplayHeaders.of] !== undefined

export const summarize = (
  messages: ReadonlyArray<KafkaMessage>,
  outcomes: ReadonlyArray<MessageOutcome>
): BatchSummary => {
  const stored: Array<Order> = []
  const toCache: Array<Order> = []
  const parkedMessages: Array<ParkedMessage> = []
  let duplicates = 0
  const replayed = { stored: 0, duplicate: 0, parked: 0 }
  outcomes.forEach((outcome, i) => {
    if (isReplay(messages[i])) {
      if (outcome._tag === "Stored") replayed.stored++
      else if (outcome._tag === "Duplicate") replayed.duplicate++
      else replayed.parked++
    }
    switch (outcome._tag) {
      case "Stored":
        stored.push(outcome.order)
        toCache.push(outcome.order)
        break
      case "Duplicate":
        duplicates++
        toCache.push(outcome.order)
        break
      case "Parked":
        parkedMessages.push({ message: messages[i]!, kind: outcome.kind, detail: outcome.detail })
    }
  })
  return { stored, toCache, duplicates, parked: parkedMessages, replayed }
}
