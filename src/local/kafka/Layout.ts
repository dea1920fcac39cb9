/**
 * How a local Kafka cluster lies on disk and on the network. Every node is both broker and KRaft
 * controller, with a folder of its own (`broker-<i>`: server.properties, data, logs, its pid while
 * it runs). The cluster's id and ports are kept in `local-kafka.json`, so that a persistent
 * cluster comes back where its clients expect it; each node's storage is formatted once.
 */
import { randomBytes } from "node:crypto"
import path from "node:path"
import { type CommandExecutor, FileSystem } from "@effect/platform"
import { type Duration, Effect, Option } from "effect"
import { distinctFreePorts, isFree } from "../freePort.ts"
import { reasonIn, runTool } from "../runTool.ts"
import { javaCommand, type KafkaRuntime } from "./Jars.ts"
import { LocalKafkaError } from "./LocalKafkaError.ts"

export const HOST = "127.0.0.1"
const STATE_FILE = "local-kafka.json"

export interface ClusterState {
  readonly clusterId: string
  readonly brokers: number
  /** Client (PLAINTEXT) port of each node. */
  readonly ports: ReadonlyArray<number>
  /** Controller (KRaft) port of each node. */
  readonly controllerPorts: ReadonlyArray<number>
}

export const brokerDir = (dataDir: string, i: number) => path.join(dataDir, `broker-${i}`)
const logsDir = (dataDir: string, i: number) => path.join(brokerDir(dataDir, i), "logs")
/** Where node `i` logs WARN and above. */
export const serverLog = (dataDir: string, i: number) => path.join(logsDir(dataDir, i), "server.log")
/** The JVM's own output. */
export const outputLog = (dataDir: string, i: number) => path.join(logsDir(dataDir, i), "stdout.log")
export const pidFile = (dataDir: string, i: number) => path.join(brokerDir(dataDir, i), "kafka.pid")
export const propertiesFile = (dataDir: string, i: number) =>
  path.join(brokerDir(dataDir, i), "server.properties")

const invalid = (message: string) => new LocalKafkaError({ reason: "InvalidOptions", message })
const ioError = (what: string) => (cause: unknown) =>
  new LocalKafkaError({
    reason: "StartFailed",
    message: `Could not ${what}: ${cause instanceof Error ? cause.message : String(cause)}`,
    cause
  })

/** Fails before anything is rewritten when a broker of ours still runs on `dataDir`. */
export const refuseIfInUse = (dataDir: string, brokers: number) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    for (let i = 0; i < brokers; i++) {
      const text = yield* fs.readFileString(pidFile(dataDir, i)).pipe(Effect.option)
      if (Option.isNone(text)) continue
      const pid = Number(text.value.trim())
      // The pid may have been reused by an unrelated process: only a JVM running Kafka counts.
      const cmdline = yield* fs.readFileString(`/proc/${pid}/cmdline`).pipe(Effect.orElseSucceed(() => ""))
      if (cmdline.includes("kafka.Kafka")) {
        return yield* invalid(
          `${dataDir} is in use by a running Kafka broker (pid ${pid}): stop that one first or use another dataDir`
        )
      }
    }
  })

/** A random cluster id as Kafka makes them: base64url, never starting with "-" (read as an option). */
const newClusterId = (): string => {
  for (;;) {
    const id = randomBytes(16).toString("base64url")
    if (!id.startsWith("-")) return id
  }
}

/**
 * The cluster's id and ports: those of the last run on `dataDir` where they are still free, else
 * new ones (or the ones asked for). Saved for the next run.
 */
export const loadOrCreateState = (
  dataDir: string,
  brokers: number,
  asked: { readonly ports?: ReadonlyArray<number>; readonly controllerPorts?: ReadonlyArray<number> }
) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const file = path.join(dataDir, STATE_FILE)
    const saved = yield* fs.readFileString(file).pipe(Effect.option)
    const previous = Option.map(saved, (text) => JSON.parse(text) as ClusterState)
    if (Option.isSome(previous) && previous.value.brokers !== brokers) {
      return yield* invalid(
        `${dataDir} holds a ${previous.value.brokers}-broker Kafka cluster, not ${brokers}: ` +
          `delete that directory or use another dataDir`
      )
    }
    const reusable = (list: ReadonlyArray<number> | undefined) =>
      list === undefined || list.length !== brokers
        ? Effect.succeed(undefined)
        : Effect.promise(() => Promise.all(list.map(isFree))).pipe(
            Effect.map((free) => (free.every(Boolean) ? list : undefined))
          )
    const fixed = [...(asked.ports ?? []), ...(asked.controllerPorts ?? [])]
    const fresh = yield* Effect.promise(() => distinctFreePorts(2 * brokers, new Set(fixed)))
    const last = Option.getOrUndefined(previous)
    const state: ClusterState = {
      clusterId: last?.clusterId ?? newClusterId(),
      brokers,
      ports: asked.ports ?? (yield* reusable(last?.ports)) ?? fresh.slice(0, brokers),
      controllerPorts:
        asked.controllerPorts ?? (yield* reusable(last?.controllerPorts)) ?? fresh.slice(brokers)
    }
    yield* fs
      .writeFileString(file, JSON.stringify(state, null, 2) + "\n")
      .pipe(Effect.mapError(ioError(`write ${file}`)))
    return state
  })

/** `server.properties` for every node, and the logging configuration they share. */
export const writeConfig = (
  dataDir: string,
  state: ClusterState,
  options: {
    readonly numPartitions: number
    readonly config: Readonly<Record<string, string | number | boolean>>
  }
) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const n = state.brokers
    const minIsr = Math.min(2, n)
    const voters = state.controllerPorts.map((port, i) => `${i}@${HOST}:${port}`).join(",")
    yield* fs.writeFileString(log4jFile(dataDir), LOG4J2_XML)
    for (let i = 0; i < n; i++) {
      yield* fs.makeDirectory(logsDir(dataDir, i), { recursive: true })
      const properties: Record<string, string | number | boolean> = {
        "process.roles": "broker,controller",
        "node.id": i,
        "controller.quorum.voters": voters,
        listeners: `PLAINTEXT://${HOST}:${state.ports[i]},CONTROLLER://${HOST}:${state.controllerPorts[i]}`,
        "advertised.listeners": `PLAINTEXT://${HOST}:${state.ports[i]}`,
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": path.join(brokerDir(dataDir, i), "data"),
        "num.partitions": options.numPartitions,
        "default.replication.factor": n,
        "min.insync.replicas": minIsr,
        "offsets.topic.replication.factor": n,
        // Fewer internal partitions make the first consumer group on a fresh cluster quicker to set up.
        "offsets.topic.num.partitions": 10,
        "transaction.state.log.replication.factor": n,
        "transaction.state.log.min.isr": minIsr,
        "transaction.state.log.num.partitions": 10,
        "share.coordinator.state.topic.replication.factor": n,
        "share.coordinator.state.topic.min.isr": minIsr,
        // Topics are created deliberately (by the service or the tests), never by a typo.
        "auto.create.topics.enable": false,
        "group.initial.rebalance.delay.ms": 0,
        // A killed broker is fenced (and its partitions move) after the session timeout, and it
        // cannot register again before then: 9 s by default, too slow for fault tests.
        "broker.heartbeat.interval.ms": 500,
        "broker.session.timeout.ms": 4000,
        ...options.config
      }
      const text = Object.entries(properties)
        .map(([key, value]) => `${key}=${String(value)}`)
        .join("\n")
      yield* fs.writeFileString(propertiesFile(dataDir, i), `${text}\n`)
    }
  }).pipe(Effect.mapError(ioError(`write the Kafka configuration in ${dataDir}`)))

const log4jFile = (dataDir: string) => path.join(dataDir, "log4j2.xml")

/** JVM options of node `i`: heap, and logs in its own folder. */
export const jvmOptions = (dataDir: string, i: number, heapMb: number): ReadonlyArray<string> => [
  `-Xms${Math.min(256, heapMb)}m`,
  `-Xmx${heapMb}m`,
  "-XX:+ExitOnOutOfMemoryError",
  "-Djava.awt.headless=true",
  `-Dlog4j2.configurationFile=${log4jFile(dataDir)}`,
  `-Dkafka.logs.dir=${logsDir(dataDir, i)}`
]

/** Formats node `i`'s storage for the cluster, unless it already is. */
export const format = (
  runtime: KafkaRuntime,
  dataDir: string,
  state: ClusterState,
  i: number,
  timeout: Duration.DurationInput
): Effect.Effect<void, LocalKafkaError, CommandExecutor.CommandExecutor | FileSystem.FileSystem> =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const dir = brokerDir(dataDir, i)
    if (yield* fs.exists(path.join(dir, "data", "meta.properties")).pipe(Effect.orElseSucceed(() => false)))
      return
    const result = yield* runTool(
      javaCommand(
        runtime,
        // C1 only: a short-lived tool starts faster without the optimising compiler.
        ["-XX:TieredStopAtLevel=1", ...jvmOptions(dataDir, i, 256)],
        "kafka.tools.StorageTool",
        "format",
        "-t",
        state.clusterId,
        "-c",
        propertiesFile(dataDir, i),
        "--ignore-formatted"
      ),
      timeout
    ).pipe(Effect.mapError(ioError("run Kafka's storage tool")))
    if (Option.getOrNull(result.exitCode) !== 0) {
      return yield* new LocalKafkaError({
        reason: "StartFailed",
        message: `Formatting Kafka storage in ${dir} failed (${Option.match(result.exitCode, {
          onNone: () => "killed",
          onSome: (code) => `exit ${code}`
        })}): ${reasonIn(result.output)}`
      })
    }
  })

// WARN and above go to a file in the broker's directory; the console only carries the line we wait for.
const LOG4J2_XML = `<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="warn" shutdownHook="disable">
  <Appenders>
    <Console name="stdout" target="SYSTEM_OUT">
      <PatternLayout pattern="%m%n"/>
    </Console>
    <File name="file" fileName="\${sys:kafka.logs.dir}/server.log">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
    </File>
  </Appenders>
  <Loggers>
    <Root level="WARN">
      <AppenderRef ref="file"/>
    </Root>
    <Logger name="kafka.server.KafkaRaftServer" level="INFO" additivity="false">
      <AppenderRef ref="stdout"/>
      <AppenderRef ref="file"/>
    </Logger>
  </Loggers>
</Configuration>
`
