/**
 * A real Apache Kafka 4.x cluster (KRaft, every node both broker and controller) for when no
 * `KAFKA_BROKERS` is configured. The broker jars come from Maven Central through
 * `scripts/kafka/pom.xml` and are cached in `.cache/kafka-<version>/libs`; Java 17+ runs them.
 * `npm start` keeps its data in `.data/kafka`, tests use a throwaway directory.
 */
import { spawn, type ChildProcess } from "node:child_process"
import { randomBytes } from "node:crypto"
import { createWriteStream, existsSync, readFileSync, rmSync, statSync } from "node:fs"
import { mkdir, mkdtemp, readFile, readdir, rename, rm, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import path from "node:path"
import { projectRoot } from "../projectRoot.ts"
import { Data, Effect, type Scope } from "effect"
import { distinctFreePorts, isFree } from "./freePort.ts"

export const DEFAULT_KAFKA_VERSION = "4.1.1"

const INSTALL_HINT =
  "Kafka needs Java 17+ and Maven to start a local broker: install them " +
  "(apt-get install openjdk-17-jre-headless maven) or set KAFKA_BROKERS=host:port"

export class LocalKafkaError extends Data.TaggedError("LocalKafkaError")<{
  readonly reason: "JavaMissing" | "MavenMissing" | "DownloadFailed" | "StartFailed" | "InvalidOptions"
  readonly message: string
  readonly cause?: unknown
}> {}

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
  readonly downloadTimeoutMs?: number
  /** From spawning the JVMs to every broker saying it has started. */
  readonly startTimeoutMs?: number
  /** Grace between SIGTERM and SIGKILL. */
  readonly stopTimeoutMs?: number
}

const HOST = "127.0.0.1"
const READY_LINE = "Kafka Server started"
const STATE_FILE = "local-kafka.json"
const repoRoot = projectRoot

interface ClusterState {
  readonly clusterId: string
  readonly brokers: number
  readonly ports: ReadonlyArray<number>
  readonly controllerPorts: ReadonlyArray<number>
}

interface Running {
  readonly child: ChildProcess
  readonly exited: Promise<void>
}

// Every JVM we started, so that none outlives this process however it ends.
const liveChildren = new Set<ChildProcess>()
let exitHookInstalled = false
const installExitHook = () => {
  if (exitHookInstalled) return
  exitHookInstalled = true
  process.once("exit", () => {
    for (const child of liveChildren) {
      try {
        if (child.pid !== undefined) process.kill(child.pid, "SIGKILL")
      } catch {
        // already gone
      }
    }
  })
}

/** A running local Kafka cluster. */
export class LocalKafka {
  private readonly running: Array<Running | undefined>
  private stopped = false

  private constructor(
    private readonly libsDir: string,
    private readonly java: string,
    private readonly state: ClusterState,
    /** The cluster's root directory: one `broker-<i>` folder per node. */
    readonly dataDir: string,
    private readonly temporary: boolean,
    private readonly heapMb: number,
    private readonly startTimeoutMs: number,
    private readonly stopTimeoutMs: number
  ) {
    this.running = new Array<Running | undefined>(state.brokers).fill(undefined)
  }

  /** `host:port` of each broker, by index. */
  get brokers(): ReadonlyArray<string> {
    return this.state.ports.map((port) => `${HOST}:${port}`)
  }

  /** Comma-separated bootstrap list, the form `KAFKA_BROKERS` takes. */
  get bootstrapServers(): string {
    return this.brokers.join(",")
  }

  get clusterId(): string {
    return this.state.clusterId
  }

  /** Where broker `i` logs WARN and above (and its JVM's own output next to it). */
  logFile(i: number): string {
    return path.join(this.brokerDir(i), "logs", "server.log")
  }

  isRunning(i: number): boolean {
    return this.running[this.index(i)] !== undefined
  }

  static async start(options: LocalKafkaOptions = {}): Promise<LocalKafka> {
    const brokers = options.brokers ?? 1
    if (!Number.isInteger(brokers) || brokers < 1) {
      throw new LocalKafkaError({
        reason: "InvalidOptions",
        message: `brokers must be 1 or more, got ${brokers}`
      })
    }
    for (const [name, list] of [
      ["ports", options.ports],
      ["controllerPorts", options.controllerPorts]
    ] as const) {
      if (list !== undefined && list.length !== brokers) {
        throw new LocalKafkaError({
          reason: "InvalidOptions",
          message: `${name} must list one port per broker (${brokers}), got ${list.length}`
        })
      }
    }
    const version = options.kafkaVersion ?? DEFAULT_KAFKA_VERSION
    const java = await requireJava()
    const libsDir = await ensureKafkaJars({
      version,
      cacheDir: options.cacheDir ?? path.join(repoRoot, ".cache"),
      timeoutMs: options.downloadTimeoutMs ?? 300_000
    })

    const temporary = options.dataDir === undefined
    const dataDir = path.resolve(options.dataDir ?? (await mkdtemp(path.join(tmpdir(), "local-kafka-"))))
    await mkdir(dataDir, { recursive: true })
    await refuseIfInUse(dataDir, brokers)
    const state = await loadOrCreateState(dataDir, brokers, options)

    const kafka = new LocalKafka(
      libsDir,
      java,
      state,
      dataDir,
      temporary,
      options.heapMb ?? 512,
      options.startTimeoutMs ?? 120_000,
      options.stopTimeoutMs ?? 15_000
    )
    try {
      await kafka.writeConfig(options)
      await Promise.all(state.ports.map((_, i) => kafka.format(i)))
      // All nodes at once: none can finish starting before a quorum of voters is up.
      await Promise.all(state.ports.map((_, i) => kafka.startBroker(i)))
      return kafka
    } catch (error) {
      await kafka.stop()
      throw error
    }
  }

  /** Starts a cluster for the life of the scope and stops it when the scope closes. */
  static scoped(options: LocalKafkaOptions = {}): Effect.Effect<LocalKafka, LocalKafkaError, Scope.Scope> {
    return Effect.acquireRelease(
      Effect.tryPromise({
        try: () => LocalKafka.start(options),
        catch: (cause) =>
          cause instanceof LocalKafkaError
            ? cause
            : new LocalKafkaError({ reason: "StartFailed", message: String(cause), cause })
      }),
      (kafka) => Effect.promise(() => kafka.stop())
    ).pipe(Effect.withSpan("LocalKafka.scoped"))
  }

  /** SIGKILL one broker, as a crash would. */
  async killBroker(i: number): Promise<void> {
    const running = this.running[this.index(i)]
    if (running === undefined) return
    // Re-referenced so that awaiting the exit keeps Node alive.
    running.child.ref()
    running.child.kill("SIGKILL")
    await running.exited
  }

  /**
   * Freeze broker `i` (SIGSTOP) or let it go on (SIGCONT): it keeps its connections open and answers
   * nothing, like a broker that hangs. Returns whether it was running.
   */
  freezeBroker(i: number, frozen: boolean): boolean {
    const running = this.running[this.index(i)]
    return running?.child.kill(frozen ? "SIGSTOP" : "SIGCONT") ?? false
  }

  /** Stop broker `i` if it runs (gracefully) and start it again on the same ports and data. */
  async restartBroker(i: number): Promise<void> {
    if (this.stopped) {
      throw new LocalKafkaError({ reason: "InvalidOptions", message: "this cluster has been stopped" })
    }
    await this.stopBroker(this.index(i))
    await this.startBroker(i)
  }

  /** Stop every broker (SIGTERM, SIGKILL after the grace period); removes temporary data. Never throws. */
  async stop(): Promise<void> {
    if (this.stopped) return
    this.stopped = true
    await Promise.all(this.running.map((_, i) => this.stopBroker(i)))
    if (this.temporary) await rm(this.dataDir, { recursive: true, force: true }).catch(() => {})
  }

  private index(i: number): number {
    if (!Number.isInteger(i) || i < 0 || i >= this.state.brokers) {
      throw new LocalKafkaError({
        reason: "InvalidOptions",
        message: `no broker ${i}: this cluster has brokers 0..${this.state.brokers - 1}`
      })
    }
    return i
  }

  private brokerDir(i: number): string {
    return path.join(this.dataDir, `broker-${i}`)
  }

  private async stopBroker(i: number): Promise<void> {
    const running = this.running[i]
    if (running === undefined) return
    running.child.ref()
    running.child.kill("SIGTERM")
    let timer: NodeJS.Timeout | undefined
    const timedOut = await Promise.race([
      running.exited.then(() => false),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(true), this.stopTimeoutMs)
      })
    ])
    clearTimeout(timer)
    if (timedOut) {
      running.child.kill("SIGKILL")
      await running.exited
    }
  }

  private async writeConfig(options: LocalKafkaOptions): Promise<void> {
    const n = this.state.brokers
    const minIsr = Math.min(2, n)
    const voters = this.state.controllerPorts.map((port, i) => `${i}@${HOST}:${port}`).join(",")
    await writeFile(path.join(this.dataDir, "log4j2.xml"), LOG4J2_XML)
    for (let i = 0; i < n; i++) {
      const dir = this.brokerDir(i)
      await mkdir(path.join(dir, "logs"), { recursive: true })
      const properties: Record<string, string | number | boolean> = {
        "process.roles": "broker,controller",
        "node.id": i,
        "controller.quorum.voters": voters,
        listeners: `PLAINTEXT://${HOST}:${this.state.ports[i]},CONTROLLER://${HOST}:${this.state.controllerPorts[i]}`,
        "advertised.listeners": `PLAINTEXT://${HOST}:${this.state.ports[i]}`,
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": path.join(dir, "data"),
        "num.partitions": options.numPartitions ?? 1,
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
      await writeFile(path.join(dir, "server.properties"), `${text}\n`)
    }
  }

  private jvmArgs(i: number, heapMb: number, extra: ReadonlyArray<string>): Array<string> {
    return [
      `-Xms${Math.min(256, heapMb)}m`,
      `-Xmx${heapMb}m`,
      "-XX:+ExitOnOutOfMemoryError",
      "-Djava.awt.headless=true",
      `-Dlog4j2.configurationFile=${path.join(this.dataDir, "log4j2.xml")}`,
      `-Dkafka.logs.dir=${path.join(this.brokerDir(i), "logs")}`,
      "-cp",
      // The java launcher expands the wildcard itself.
      path.join(this.libsDir, "*"),
      ...extra
    ]
  }

  private async format(i: number): Promise<void> {
    const dir = this.brokerDir(i)
    if (existsSync(path.join(dir, "data", "meta.properties"))) return
    const result = await run(
      this.java,
      // C1 only: a short-lived tool starts faster without the optimising compiler.
      [
        "-XX:TieredStopAtLevel=1",
        ...this.jvmArgs(i, 256, [
          "kafka.tools.StorageTool",
          "format",
          "-t",
          this.state.clusterId,
          "-c",
          path.join(dir, "server.properties"),
          "--ignore-formatted"
        ])
      ],
      { timeoutMs: this.startTimeoutMs }
    )
    if (result.code !== 0) {
      throw new LocalKafkaError({
        reason: "StartFailed",
        message: `Formatting Kafka storage in ${dir} failed (exit ${result.code}):\n${lastLines(result.output, 30)}`
      })
    }
  }

  private async startBroker(i: number): Promise<void> {
    if (this.running[i] !== undefined) return
    const dir = this.brokerDir(i)
    const outputFile = path.join(dir, "logs", "stdout.log")
    const log = createWriteStream(outputFile, { flags: "a" })
    // A full disk must not crash the process that runs the tests or the service.
    log.on("error", () => {})
    const append = (chunk: string | Buffer) => {
      if (!log.writableEnded) log.write(chunk)
    }
    log.write(`--- ${new Date().toISOString()} starting broker ${i}\n`)

    installExitHook()
    const child = spawn(
      this.java,
      this.jvmArgs(i, this.heapMb, ["kafka.Kafka", path.join(dir, "server.properties")]),
      {
        cwd: dir,
        stdio: ["ignore", "pipe", "pipe"],
        // Own process group: a Ctrl-C meant for `npm start` must not take Kafka down before the
        // service has drained; we stop it ourselves, last.
        detached: true
      }
    )
    liveChildren.add(child)
    const exited = new Promise<void>((resolve) => {
      child.once("exit", () => resolve())
      child.once("error", () => resolve())
    })
    void exited.then(() => {
      liveChildren.delete(child)
      rmSync(pidFile(dir), { force: true })
      if (this.running[i]?.child === child) this.running[i] = undefined
    })
    // Output may still arrive after `exit`; the log closes once the pipes have.
    child.once("close", () => log.end())
    child.once("error", () => log.end())
    this.running[i] = { child, exited }
    if (child.pid !== undefined) {
      watchdog(child.pid)
      await writeFile(pidFile(dir), `${child.pid}\n`)
    }

    let buffered = ""
    const ready = new Promise<void>((resolve) => {
      child.stdout!.on("data", (chunk: Buffer) => {
        const text = chunk.toString("utf8")
        append(text)
        buffered = (buffered + text).slice(-4096)
        if (buffered.includes(READY_LINE)) {
          buffered = ""
          resolve()
        }
      })
    })
    child.stderr!.on("data", (chunk: Buffer) => append(chunk))

    let timer: NodeJS.Timeout | undefined
    const outcome = await Promise.race([
      ready.then(() => "ready" as const),
      exited.then(() => "exited" as const),
      new Promise<"timeout">((resolve) => {
        timer = setTimeout(() => resolve("timeout"), this.startTimeoutMs)
      })
    ])
    clearTimeout(timer)
    if (outcome === "ready") {
      // Started: the cluster must not keep a finished script alive; the exit hook and the watchdog
      // take the JVM down with us.
      child.unref()
      ;(child.stdout as unknown as { unref?: () => void }).unref?.()
      ;(child.stderr as unknown as { unref?: () => void }).unref?.()
      return
    }
    if (outcome === "timeout") {
      child.kill("SIGKILL")
      await exited
    }
    await new Promise<void>((resolve) => (log.closed ? resolve() : log.once("close", () => resolve())))
    const why =
      outcome === "timeout"
        ? `did not report "${READY_LINE}" within ${this.startTimeoutMs} ms`
        : `exited (${child.exitCode ?? child.signalCode ?? child.spawnfile})`
    throw new LocalKafkaError({
      reason: "StartFailed",
      message:
        `Kafka broker ${i} on ${HOST}:${this.state.ports[i]} ${why}.\n` +
        `Last lines of ${this.logFile(i)}:\n${tailFile(this.logFile(i), 30)}\n` +
        `Last lines of ${outputFile}:\n${tailFile(outputFile, 30)}`
    })
  }
}

/**
 * Makes sure `.cache/kafka-<version>/libs` holds the broker's jars, running Maven only when the
 * folder is missing or was left half-copied. Returns the folder.
 */
/** A random cluster id as Kafka makes them: base64url, never starting with "-" (read as an option). */
const newClusterId = (): string => {
  for (;;) {
    const id = randomBytes(16).toString("base64url")
    if (!id.startsWith("-")) return id
  }
}

export async function ensureKafkaJars(options: {
  readonly version?: string
  readonly cacheDir?: string
  readonly timeoutMs?: number
}): Promise<string> {
  const version = options.version ?? DEFAULT_KAFKA_VERSION
  const home = path.join(options.cacheDir ?? path.join(repoRoot, ".cache"), `kafka-${version}`)
  const libs = path.join(home, "libs")
  const marker = path.join(libs, ".complete")
  if (existsSync(marker)) return libs

  await requireTool("mvn", ["-v"], "MavenMissing", "`mvn` (Maven) was not found on PATH")
  await mkdir(home, { recursive: true })
  // Copy into a private folder and rename it into place, so that parallel test workers never
  // see a half-filled libs folder.
  const staging = path.join(home, `libs.tmp-${process.pid}-${randomBytes(4).toString("hex")}`)
  const result = await run(
    "mvn",
    [
      "-B",
      "-q",
      "-f",
      path.join(repoRoot, "scripts", "kafka", "pom.xml"),
      `-Dkafka.version=${version}`,
      `-Dlibs.dir=${staging}`,
      "dependency:copy-dependencies"
    ],
    { timeoutMs: options.timeoutMs ?? 300_000 }
  )
  await writeFile(path.join(home, "mvn.log"), result.output)
  const jars = existsSync(staging) ? (await readdir(staging)).filter((f) => f.endsWith(".jar")) : []
  if (result.code !== 0 || !jars.includes(`kafka_2.13-${version}.jar`)) {
    await rm(staging, { recursive: true, force: true })
    throw new LocalKafkaError({
      reason: "DownloadFailed",
      message:
        `Maven could not fetch Kafka ${version} from Maven Central (exit ${result.code}). ` +
        `Check network access to repo.maven.apache.org or set KAFKA_BROKERS=host:port.\n` +
        lastLines(result.output, 30)
    })
  }
  await writeFile(path.join(staging, ".complete"), `kafka ${version}, ${jars.length} jars\n`)
  if (existsSync(marker)) {
    await rm(staging, { recursive: true, force: true })
    return libs
  }
  // A libs folder without the marker is a leftover of an interrupted copy.
  await rm(libs, { recursive: true, force: true })
  try {
    await rename(staging, libs)
  } catch (cause) {
    await rm(staging, { recursive: true, force: true })
    if (!existsSync(marker)) throw cause
  }
  return libs
}

async function requireJava(): Promise<string> {
  const java = process.env.JAVA_HOME ? path.join(process.env.JAVA_HOME, "bin", "java") : "java"
  const result = await requireTool(java, ["-version"], "JavaMissing", `\`${java}\` was not found`)
  const match = /version "(\d+)(?:\.(\d+))?/.exec(result.output)
  const major = match ? (match[1] === "1" ? Number(match[2]) : Number(match[1])) : 0
  if (major < 17) {
    throw new LocalKafkaError({
      reason: "JavaMissing",
      message: `\`${java} -version\` reports ${match ? `Java ${major}` : "an unknown version"}. ${INSTALL_HINT}`
    })
  }
  return java
}

async function requireTool(
  command: string,
  args: ReadonlyArray<string>,
  reason: "JavaMissing" | "MavenMissing",
  missing: string
): Promise<RunResult> {
  const result = await run(command, args, { timeoutMs: 30_000 })
  if (result.spawnError !== undefined) {
    throw new LocalKafkaError({ reason, message: `${missing}. ${INSTALL_HINT}`, cause: result.spawnError })
  }
  return result
}

interface RunResult {
  readonly code: number | null
  readonly output: string
  readonly spawnError?: Error
}

/** Runs a command to its end, collecting stdout and stderr together. */
function run(
  command: string,
  args: ReadonlyArray<string>,
  options: { readonly timeoutMs: number }
): Promise<RunResult> {
  return new Promise((resolve) => {
    const child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"] })
    let output = ""
    const collect = (chunk: Buffer) => {
      output += chunk.toString("utf8")
    }
    child.stdout.on("data", collect)
    child.stderr.on("data", collect)
    const timer = setTimeout(() => {
      output += `\n(killed after ${options.timeoutMs} ms)`
      child.kill("SIGKILL")
    }, options.timeoutMs)
    child.once("error", (spawnError) => {
      clearTimeout(timer)
      resolve({ code: null, output, spawnError })
    })
    child.once("close", (code) => {
      clearTimeout(timer)
      resolve({ code, output })
    })
  })
}

/**
 * A shell that SIGKILLs the JVM once this Node process is gone: covers deaths no `exit` handler
 * sees (SIGKILL of a test worker, an unhandled signal).
 */
function watchdog(javaPid: number): void {
  const script =
    'while kill -0 "$1" 2>/dev/null; do kill -0 "$2" 2>/dev/null || exit 0; sleep 1; done; kill -9 "$2" 2>/dev/null'
  try {
    const child = spawn("sh", ["-c", script, "local-kafka-watchdog", String(process.pid), String(javaPid)], {
      stdio: "ignore",
      detached: true
    })
    child.on("error", () => {})
    child.unref()
  } catch {
    // Without sh the exit hook still covers ordinary exits.
  }
}

const pidFile = (brokerDir: string) => path.join(brokerDir, "kafka.pid")

/** Fails before anything is rewritten when a broker of ours still runs on `dataDir`. */
async function refuseIfInUse(dataDir: string, brokers: number): Promise<void> {
  for (let i = 0; i < brokers; i++) {
    const file = pidFile(path.join(dataDir, `broker-${i}`))
    if (!existsSync(file)) continue
    const pid = Number((await readFile(file, "utf8")).trim())
    // The pid may have been reused by an unrelated process: only a JVM running Kafka counts.
    const cmdline = await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "")
    if (cmdline.includes("kafka.Kafka")) {
      throw new LocalKafkaError({
        reason: "InvalidOptions",
        message:
          `${dataDir} is in use by a running Kafka broker (pid ${pid}): ` +
          `stop that one first or use another dataDir`
      })
    }
  }
}

async function loadOrCreateState(
  dataDir: string,
  brokers: number,
  options: LocalKafkaOptions
): Promise<ClusterState> {
  const file = path.join(dataDir, STATE_FILE)
  let previous: ClusterState | undefined
  if (existsSync(file)) {
    previous = JSON.parse(await readFile(file, "utf8")) as ClusterState
    if (previous.brokers !== brokers) {
      throw new LocalKafkaError({
        reason: "InvalidOptions",
        message:
          `${dataDir} holds a ${previous.brokers}-broker Kafka cluster, not ${brokers}: ` +
          `delete that directory or use another dataDir`
      })
    }
  }
  const clusterId = previous?.clusterId ?? newClusterId()
  // Keep last run's ports when they are still free, so a persistent cluster stays where clients expect it.
  const reusable = async (list: ReadonlyArray<number> | undefined) =>
    list !== undefined && list.length === brokers && (await Promise.all(list.map(isFree))).every(Boolean)
      ? list
      : undefined
  const fixed = [...(options.ports ?? []), ...(options.controllerPorts ?? [])]
  const fresh = await distinctFreePorts(2 * brokers, new Set(fixed))
  const ports = options.ports ?? (await reusable(previous?.ports)) ?? fresh.slice(0, brokers)
  const controllerPorts =
    options.controllerPorts ?? (await reusable(previous?.controllerPorts)) ?? fresh.slice(brokers)
  const state: ClusterState = { clusterId, brokers, ports, controllerPorts }
  await writeFile(file, JSON.stringify(state, null, 2) + "\n")
  return state
}

function lastLines(text: string, n: number): string {
  return text.trimEnd().split("\n").slice(-n).join("\n")
}

/** The last `n` lines of a log, without Java stack frames so that the exception messages fit. */
function tailFile(file: string, n: number): string {
  try {
    const size = statSync(file).size
    if (size === 0) return "(empty)"
    const text = readFileSync(file, "utf8")
    const recent = text.length > 65_536 ? text.slice(-65_536) : text
    return lastLines(
      recent
        .split("\n")
        .filter((line) => !/^\s+at |^\s*\.\.\. \d+ more/.test(line))
        .join("\n"),
      n
    )
  } catch {
    return "(no log)"
  }
}

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
