import { describe, expect, it } from "@effect/vitest"
import { isNotAMember } from "../../src/kafka/KafkaConsumer.ts"

/** kafkajs' protocol errors carry Kafka's error name as `type`, sometimes wrapped in a `cause`. */
const protocolError = (type: string) => Object.assign(new Error(type), { type })

describe("a consumer learns that the group has dropped it", () => {
  it("from the coordinator's answers meaning it is no longer a member", () => {
    for (const type of ["UNKNOWN_MEMBER_ID", "ILLEGAL_GENERATION", "FENCED_INSTANCE_ID"]) {
      expect(isNotAMember(protocolError(type)), type).toBe(true)
      expect(isNotAMember(Object.assign(new Error("wrapped"), { cause: protocolError(type) })), type).toBe(
        true
      )
    }
  })

  it("but not from a rebalance it is still part of, or from an outage", () => {
    for (const error of [
      protocolError("REBALANCE_IN_PROGRESS"),
      protocolError("NOT_COORDINATOR"),
      new Error("Connection error: ECONNREFUSED"),
      "a string"
    ]) {
      expect(isNotAMember(error)).toBe(false)
    }
  })
})
