import { describe, expect, it } from "@effect/vitest"
import { mustRejoin } from "../../src/kafka/KafkaConsumer.ts"

/** kafkajs' protocol errors carry Kafka's error name as `type`, sometimes wrapped in a `cause`. */
const protocolError = (type: string) => Object.assign(new Error(type), { type })

describe("a consumer learns that it must join the group again before it can settle anything", () => {
  it("from the coordinator's answers meaning it is no longer a member, or no longer talks to the coordinator", () => {
    // NOT_COORDINATOR_FOR_GROUP: kafkajs keeps the coordinator it joined through for the whole
    // generation, and finds the new one only by joining again.
    for (const type of [
      "UNKNOWN_MEMBER_ID",
      "ILLEGAL_GENERATION",
      "FENCED_INSTANCE_ID",
      "NOT_COORDINATOR_FOR_GROUP"
    ]) {
      expect(mustRejoin(protocolError(type)), type).toBe(true)
      expect(mustRejoin(Object.assign(new Error("wrapped"), { cause: protocolError(type) })), type).toBe(true)
    }
  })

  it("but not from a rebalance it is still part of, or from an outage", () => {
    for (const error of [
      protocolError("REBALANCE_IN_PROGRESS"),
      protocolError("COORDINATOR_NOT_AVAILABLE"),
      new Error("Connection error: ECONNREFUSED"),
      "a string"
    ]) {
      expect(mustRejoin(error)).toBe(false)
    }
  })
})
