/**
 * A real Apache Kafka 4.x cluster (KRaft, every node both broker and controller) on this machine,
 * for the life of a scope: `npm start` runs one when no `KAFKA_BROKERS` is configured, tests and
 * the fault suite (three nodes, brokers killed and restarted) start their own. Its pieces: the jars
 * and Java (`kafka/Jars.ts`), the layout on disk and ports (`kafka/Layout.ts`), the JVM of each
 * node (`kafka/Broker.ts`).
 */
import path from "node:path"
import { type CommandExecutor, FileSystem } from "@effect/platform"
import { NodeContext } from "@effect/platform-node"
import { Duration, Effect, ExecutionStrategy, Exit, Option, Ref, Scope } from "effect"
import { projectRoot } from "../projectRoot.ts"
import type { ServerProcess } from "./ServerProcess.ts"
import { startBroker } from "./kafka/Broker.ts"
import { DEFAULT_KAFKA_VERSION, kafkaRuntime } from "./kafka/Jars.ts"
import { format, HOST, loadOrCreateState, refuseIfInUse, serverLog, writeConfig } from "./kafka/Layout.ts"
import { LocalKafkaError } from "./kafka/LocalKafkaError.ts"

export { DEFAULT_KAFKA_VERSION, LocalKafkaError }

export interface LocalKafkaOptions {
  /** Number of nodes, each a broker and a KRaft voter: 1 (default) or 3 for fault tests. */
  readonly brokers?: number
  /** Keep data here across runs; without it a temporary directory is used and removed on stop. */
  readonly dataDir?: string
  /** Client (PLAINTEXT) port per broker; free ports by default. */
  readonly ports?: ReadonlyArray<number>
  /** Controller (KRaft) port per broker; free ports by default. */
  readonly controllerPorts?: ReadonlyArray<number>
  /** Default partition count for topics created without one. */
  readonly numPartitions?: number
  /** Extra `server.properties` entries; they win over ours. */
  readonly config?: Readonly<Record<string, string | number | boolean>>
  /** Maximum heap per broker JVM. */
  readonly heapMb?: number
  readonly kafkaVersion?: string
  /** Where the jars are cached; `<repo>/.cache` by default. */
  readonly cacheDir?: string
  /** Fetching the jars with Maven (first run only). */
  readonly downloadTimeout?: Duration.DurationInput
  /** From spawning a node's JVM to its saying it has started. */
  readonly startTimeout?: Duration.DurationInput
  /** Grace between SIGTERM and SIGKILL. */
  readonly stopTimeout?: Duration.DurationInput
}

/** A running cluster. Broker indices go from 0 to `brokers.length - 1`. */
export interface LocalKafka {
  /** `host:port` of each broker, by index. */
  readonly brokers: ReadonlyArray<string>
  /** Comma-separated bootstrap list, the form `KAFKA_BROKERS` takes. */
  readonly bootstrapServers: string
  readonly clusterId: string
  /** The cluster's root directory: one `broker-<i>` folder per node. */
  readonly dataDir: string
  /** Where broker `i` logs WARN and above (its JVM's own output is next to it). */
  readonly logFile: (i: number) => string
  readonly isRunning: (i: number) => Effect.Effect<boolean>
  /** SIGKILL broker `i`, as a crash would; completes once it has exited. */
  readonly killBroker: (i: number) => Effect.Effect<void>
  /**
   * Freeze broker `i` (SIGSTOP) or let it go on (SIGCONT): it keeps its connections open and
   * answers nothing, like a broker that hangs. Succeeds with whether it was running.
   */
  readonly freezeBroker: (i: number, frozen: boolean) => Effect.Effect<boolean>
  /** Stop broker `i` if it runs (gracefully) and start it again on the same ports and data. */
  readonly restartBroker: (i: number) => Effect.Effect<void, LocalKafkaError>
}

interface RunningNode {
  readonly server: ServerProcess
  readonly scope: Scope.CloseableScope
}

/** Starts a cluster for the life of the scope; closing the scope stops every broker. */
export const make = (
  options: LocalKafkaOptions = {}
): Effect.Effect<LocalKafka, LocalKafkaError, Scope.Scope> =>
  Effect.gen(function* () {
    const brokers = options.brokers ?? 1
    if (!Number.isInteger(brokers) || brokers < 1) {
      return yield* new LocalKafkaError({
        reason: "InvalidOptions",
        message: `brokers must be 1 or more, got ${brokers}`
      })
    }
    for (const [name, list] of [
      ["ports", options.ports],
      ["controllerPorts", options.controllerPorts]
    ] as const) {
      if (list !== undefined && list.length !== brokers) {
        return yield* new LocalKafkaError({
          reason: "InvalidOptions",
          message: `${name} must list one port per broker (${brokers}), got ${list.length}`
        })
      }
    }
    const fs = yield* FileSystem.FileSystem
    const runtime = yield* kafkaRuntime({
      version: options.kafkaVersion ?? DEFAULT_KAFKA_VERSION,
      cacheDir: options.cacheDir ?? path.join(projectRoot, ".cache"),
      downloadTimeout: options.downloadTimeout ?? Duration.minutes(5)
    })

    const cannot = (what: string) => (cause: unknown) =>
      new LocalKafkaError({
        reason: "StartFailed",
        message: `Could not ${what}: ${cause instanceof Error ? cause.message : String(cause)}`,
        cause
      })
    const dataDir = yield* options.dataDir === undefined
      ? // Removed once every broker has stopped (this finalizer is added first, so it runs last).
        Effect.acquireRelease(
          fs
            .makeTempDirectory({ prefix: "local-kafka-" })
            .pipe(Effect.mapError(cannot("create a temporary directory"))),
          (dir) => fs.remove(dir, { recursive: true, force: true }).pipe(Effect.ignore)
        )
      : Effect.succeed(path.resolve(options.dataDir))
    yield* fs
      .makeDirectory(dataDir, { recursive: true })
      .pipe(Effect.mapError(cannot(`create the Kafka data directory ${dataDir}`)))
    yield* refuseIfInUse(dataDir, brokers)
    const state = yield* loadOrCreateState(dataDir, brokers, {
      ...(options.ports === undefined ? {} : { ports: options.ports }),
      ...(options.controllerPorts === undefined ? {} : { controllerPorts: options.controllerPorts })
    })
    yield* writeConfig(dataDir, state, {
      numPartitions: options.numPartitions ?? 1,
      config: options.config ?? {}
    })
    const startTimeout = options.startTimeout ?? Duration.minutes(2)
    yield* Effect.forEach(state.ports, (_, i) => format(runtime, dataDir, state, i, startTimeout), {
      concurrency: "unbounded",
      discard: true
    })

    // Each node runs in a scope of its own within the cluster's, so that one can be stopped and
    // started again while closing the cluster's scope still stops them all.
    const clusterScope = yield* Effect.scope
    const context = yield* Effect.context<CommandExecutor.CommandExecutor | FileSystem.FileSystem>()
    const nodes = yield* Ref.make<ReadonlyArray<Option.Option<RunningNode>>>(
      state.ports.map(() => Option.none())
    )
    const stopped = yield* Ref.make(false)
    yield* Effect.addFinalizer(() => Ref.set(stopped, true))

    const index = (i: number) =>
      Number.isInteger(i) && i >= 0 && i < brokers
        ? Effect.succeed(i)
        : Effect.dieMessage(`no broker ${i}: this cluster has brokers 0..${brokers - 1}`)
    const node = (i: number) => Effect.flatMap(index(i), (i) => Effect.map(Ref.get(nodes), (all) => all[i]!))
    const setNode = (i: number, value: Option.Option<RunningNode>) =>
      Ref.update(nodes, (all) => all.map((n, j) => (j === i ? value : n)))

    const startNode = (i: number) =>
      Effect.gen(function* () {
        const scope = yield* Scope.fork(clusterScope, ExecutionStrategy.sequential)
        const server = yield* startBroker(runtime, dataDir, state, i, {
          heapMb: options.heapMb ?? 512,
          startTimeout,
          stopTimeout: options.stopTimeout ?? Duration.seconds(15)
        }).pipe(
          Scope.extend(scope),
          Effect.onError(() => Scope.close(scope, Exit.void))
        )
        yield* setNode(i, Option.some({ server, scope }))
      })
    const stopNode = (i: number) =>
      Effect.flatMap(node(i), (current) =>
        Option.match(current, {
          onNone: () => Effect.void,
          onSome: ({ scope }) => Effect.zipRight(setNode(i, Option.none()), Scope.close(scope, Exit.void))
        })
      )

    // All nodes at once: none can finish starting before a quorum of voters is up.
    yield* Effect.forEach(state.ports, (_, i) => startNode(i), { concurrency: "unbounded", discard: true })
    // And all stop at once, as they started: one by one, closing a three-node cluster took 16 s
    // here, at once 6 s.
    yield* Effect.addFinalizer(() =>
      Effect.forEach(state.ports, (_, i) => stopNode(i), { concurrency: "unbounded", discard: true })
    )

    const cluster: LocalKafka = {
      brokers: state.ports.map((port) => `${HOST}:${port}`),
      bootstrapServers: state.ports.map((port) => `${HOST}:${port}`).join(","),
      clusterId: state.clusterId,
      dataDir,
      logFile: (i) => serverLog(dataDir, i),
      isRunning: (i) =>
        Effect.flatMap(
          node(i),
          Option.match({ onNone: () => Effect.succeed(false), onSome: (n) => n.server.isRunning })
        ),
      killBroker: (i) =>
        Effect.flatMap(
          node(i),
          Option.match({
            onNone: () => Effect.void,
            onSome: (n) => n.server.signal("SIGKILL").pipe(Effect.zipRight(n.server.exited))
          })
        ),
      freezeBroker: (i, frozen) =>
        Effect.flatMap(
          node(i),
          Option.match({
            onNone: () => Effect.succeed(false),
            onSome: (n) => n.server.signal(frozen ? "SIGSTOP" : "SIGCONT")
          })
        ),
      restartBroker: (i) =>
        Effect.gen(function* () {
          if (yield* Ref.get(stopped)) {
            return yield* new LocalKafkaError({
              reason: "InvalidOptions",
              message: "this cluster has been stopped"
            })
          }
          yield* stopNode(i)
          yield* startNode(i)
        }).pipe(Effect.provide(context))
    }
    return cluster
  }).pipe(Effect.provide(NodeContext.layer), Effect.withSpan("LocalKafka.make"))
