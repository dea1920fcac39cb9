/**
 * What runs a local Kafka broker: its jars, fetched from Maven Central through
 * `scripts/kafka/pom.xml` into `.cache/kafka-<version>/libs` (once: later starts find them there),
 * and Java 17+.
 */
import { randomBytes } from "node:crypto"
import path from "node:path"
import { Command, type CommandExecutor, FileSystem } from "@effect/platform"
import { type Duration, Effect, Option } from "effect"
import { projectRoot } from "../../projectRoot.ts"
import { reasonIn, runTool } from "../runTool.ts"
import { LocalKafkaError } from "./LocalKafkaError.ts"

export const DEFAULT_KAFKA_VERSION = "4.1.1"

const INSTALL_HINT =
  "Kafka needs Java 17+ and Maven to start a local broker: install them " +
  "(apt-get install openjdk-17-jre-headless maven) or set KAFKA_BROKERS=host:port"

/** A Java to run Kafka's classes with, and the folder of its jars. */
export interface KafkaRuntime {
  readonly java: string
  readonly libsDir: string
}

/** `java` runs `mainClass` from the Kafka jars. */
export const javaCommand = (
  runtime: KafkaRuntime,
  jvmOptions: ReadonlyArray<string>,
  mainClass: string,
  ...args: ReadonlyArray<string>
) =>
  // The java launcher expands the wildcard itself.
  Command.make(runtime.java, ...jvmOptions, "-cp", path.join(runtime.libsDir, "*"), mainClass, ...args)

/** Java 17+ (`$JAVA_HOME/bin/java`, else `java` on the PATH) and the jars of Kafka `version`. */
export const kafkaRuntime = (options: {
  readonly version: string
  readonly cacheDir: string
  readonly downloadTimeout: Duration.DurationInput
}): Effect.Effect<KafkaRuntime, LocalKafkaError, CommandExecutor.CommandExecutor | FileSystem.FileSystem> =>
  Effect.gen(function* () {
    const java = yield* requireJava
    const libsDir = yield* ensureJars(options)
    return { java, libsDir }
  })

const requireTool = (
  command: string,
  args: ReadonlyArray<string>,
  reason: "JavaMissing" | "MavenMissing",
  missing: string
) =>
  runTool(Command.make(command, ...args), "30 seconds").pipe(
    Effect.mapError((cause) => new LocalKafkaError({ reason, message: `${missing}. ${INSTALL_HINT}`, cause }))
  )

const requireJava = Effect.gen(function* () {
  const home = process.env["JAVA_HOME"]
  const java = home ? path.join(home, "bin", "java") : "java"
  const result = yield* requireTool(java, ["-version"], "JavaMissing", `\`${java}\` was not found`)
  const match = /version "(\d+)(?:\.(\d+))?/.exec(result.output)
  const major = match ? (match[1] === "1" ? Number(match[2]) : Number(match[1])) : 0
  if (major < 17) {
    return yield* new LocalKafkaError({
      reason: "JavaMissing",
      message: `\`${java} -version\` reports ${match ? `Java ${major}` : "an unknown version"}. ${INSTALL_HINT}`
    })
  }
  return java
})

/**
 * Makes sure `<cacheDir>/kafka-<version>/libs` holds the broker's jars, running Maven only when
 * the folder is missing or was left half-copied. Returns the folder.
 */
export const ensureJars = (options: {
  readonly version: string
  readonly cacheDir: string
  readonly downloadTimeout: Duration.DurationInput
}) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const home = path.join(options.cacheDir, `kafka-${options.version}`)
    const libs = path.join(home, "libs")
    const marker = path.join(libs, ".complete")
    const cannot = (what: string) => (cause: unknown) =>
      new LocalKafkaError({
        reason: "DownloadFailed",
        message: `Could not ${what}: ${cause instanceof Error ? cause.message : String(cause)}`,
        cause
      })
    if (yield* fs.exists(marker).pipe(Effect.orElseSucceed(() => false))) return libs

    yield* requireTool("mvn", ["-v"], "MavenMissing", "`mvn` (Maven) was not found on PATH")
    yield* fs.makeDirectory(home, { recursive: true }).pipe(Effect.mapError(cannot(`create ${home}`)))
    // Maven copies into a private folder that is renamed into place, so that parallel test
    // workers never see a half-filled libs folder.
    const staging = path.join(home, `libs.tmp-${process.pid}-${randomBytes(4).toString("hex")}`)
    return yield* Effect.gen(function* () {
      const result = yield* runTool(
        Command.make(
          "mvn",
          "-B",
          "-q",
          "-f",
          path.join(projectRoot, "scripts", "kafka", "pom.xml"),
          `-Dkafka.version=${options.version}`,
          `-Dlibs.dir=${staging}`,
          "dependency:copy-dependencies"
        ),
        options.downloadTimeout
      ).pipe(Effect.mapError(cannot("run Maven")))
      const mavenLog = path.join(home, "mvn.log")
      yield* fs.writeFileString(mavenLog, result.output).pipe(Effect.ignore)
      const jars = (yield* fs.readDirectory(staging).pipe(Effect.orElseSucceed(() => []))).filter((f) =>
        f.endsWith(".jar")
      )
      if (Option.getOrNull(result.exitCode) !== 0 || !jars.includes(`kafka_2.13-${options.version}.jar`)) {
        return yield* new LocalKafkaError({
          reason: "DownloadFailed",
          message:
            `Maven could not fetch Kafka ${options.version} from Maven Central ` +
            `(${Option.match(result.exitCode, { onNone: () => "killed", onSome: (code) => `exit ${code}` })}: ` +
            `${reasonIn(result.output)}). Check network access to repo.maven.apache.org or set ` +
            `KAFKA_BROKERS=host:port (Maven's output: ${mavenLog})`
        })
      }
      yield* fs
        .writeFileString(path.join(staging, ".complete"), `kafka ${options.version}, ${jars.length} jars\n`)
        .pipe(Effect.mapError(cannot(`write in ${staging}`)))
      if (yield* fs.exists(marker).pipe(Effect.orElseSucceed(() => false))) return libs
      // A libs folder without the marker is a leftover of an interrupted copy.
      yield* fs.remove(libs, { recursive: true, force: true }).pipe(Effect.ignore)
      yield* fs.rename(staging, libs).pipe(
        // Another process may have put its copy in place first.
        Effect.catchAll((cause) =>
          Effect.flatMap(fs.exists(marker).pipe(Effect.orElseSucceed(() => false)), (done) =>
            done ? Effect.void : Effect.fail(cannot(`move the jars into ${libs}`)(cause))
          )
        )
      )
      return libs
    }).pipe(Effect.ensuring(fs.remove(staging, { recursive: true, force: true }).pipe(Effect.ignore)))
  })
