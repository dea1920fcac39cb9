import { Data } from "effect"

/** Why a local Kafka cluster could not be started or used; the message is one line. */
export class LocalKafkaError extends Data.TaggedError("LocalKafkaError")<{
  readonly reason: "JavaMissing" | "MavenMissing" | "DownloadFailed" | "StartFailed" | "InvalidOptions"
  readonly message: string
  readonly cause?: unknown
}> {}
