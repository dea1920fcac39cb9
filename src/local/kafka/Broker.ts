/**
 * One node of a local Kafka cluster: its JVM, started on the node's folder and ports and stopped
 * (SIGTERM, then SIGKILL after a grace period) when its scope closes.
 */
import { Command } from "@effect/platform"
import { type Duration, Effect } from "effect"
import * as ServerProcess from "../ServerProcess.ts"
import { javaCommand, type KafkaRuntime } from "./Jars.ts"
import {
  brokerDir,
  type ClusterState,
  HOST,
  jvmOptions,
  outputLog,
  pidFile,
  propertiesFile,
  serverLog
} from "./Layout.ts"
import { LocalKafkaError } from "./LocalKafkaError.ts"

/** What the broker prints once it serves clients. */
const READY_LINE = "Kafka Server started"

export const startBroker = (
  runtime: KafkaRuntime,
  dataDir: string,
  state: ClusterState,
  i: number,
  options: {
    readonly heapMb: number
    readonly startTimeout: Duration.DurationInput
    readonly stopTimeout: Duration.DurationInput
  }
) =>
  ServerProcess.start({
    name: `Kafka broker ${i} on ${HOST}:${state.ports[i]}`,
    command: javaCommand(
      runtime,
      jvmOptions(dataDir, i, options.heapMb),
      "kafka.Kafka",
      propertiesFile(dataDir, i)
    ).pipe(Command.workingDirectory(brokerDir(dataDir, i))),
    logFile: outputLog(dataDir, i),
    reasonFile: serverLog(dataDir, i),
    readyLine: READY_LINE,
    startTimeout: options.startTimeout,
    stopSignal: "SIGTERM",
    stopTimeout: options.stopTimeout,
    orphanSignal: "SIGKILL",
    pidFile: pidFile(dataDir, i)
  }).pipe(
    Effect.mapError((e) => new LocalKafkaError({ reason: "StartFailed", message: e.message, cause: e }))
  )
