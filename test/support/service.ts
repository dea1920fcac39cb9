/** The service as a real process (`src/main.ts`), for tests that kill or signal it. */
import { spawn, type ChildProcess } from "node:child_process"
import { Effect } from "effect"
import type { TestTopics } from "./kafka.ts"

export interface ServiceProcess {
  readonly child: ChildProcess
  readonly env: Readonly<Record<string, string>>
  /** Everything it printed so far. */
  readonly output: () => string
  /** Resolves with the exit code (or the signal's name). */
  readonly exited: Promise<number | string>
}

/**
 * What a test's service process is given: its database and topics, any free port (read back with
 * `serviceUrl`), no access log, nothing warmed, logs at info; `env` on top.
 */
export const serviceEnv = (
  topics: TestTopics,
  databaseUrl: string,
  env: Record<string, string> = {}
): Record<string, string> => ({
  CONFIG_FILE: "config/config.yaml",
  DATABASE_URL: databaseUrl,
  KAFKA_BROKERS: topics.brokers,
  KAFKA_TOPIC: topics.topic,
  KAFKA_DLQ_TOPIC: topics.dlqTopic,
  KAFKA_GROUP_ID: topics.groupId,
  HTTP_HOST: "127.0.0.1",
  // Any free port, read back from the "HTTP server listening" line (serviceUrl): a port picked
  // beforehand can be taken by an outgoing connection before the service binds it.
  HTTP_PORT: "0",
  HTTP_ACCESS_LOG: "false",
  CACHE_WARM_COUNT: "0",
  LOG_LEVEL: "info",
  ...env
})

/** The JSON log lines in what a process printed; whatever else it printed is left out. */
export const logLinesIn = (output: string): Array<Record<string, unknown>> =>
  output.split("\n").flatMap((line) => {
    if (!line.startsWith("{")) return []
    try {
      return [JSON.parse(line) as Record<string, unknown>]
    } catch {
      return []
    }
  })

export const startService = (env: Record<string, string>): ServiceProcess => {
  // One process (no tsx wrapper), so that a signal reaches the service itself.
  const child = spawn(process.execPath, ["--import", "tsx", "src/main.ts"], {
    // Open (no sign-in) unless a test says otherwise, as under `npm start`; one process, not one
    // per core (test/lifecycle/workers.test.ts starts several).
    env: { ...process.env, LOG_FORMAT: "json", AUTH_MODE: "none", HTTP_WORKERS: "1", ...env },
    stdio: ["ignore", "pipe", "pipe"]
  })
  let output = ""
  child.stdout!.on("data", (d) => (output += d))
  child.stderr!.on("data", (d) => (output += d))
  const exited = new Promise<number | string>((resolve) =>
    child.once("exit", (code, signal) => resolve(code ?? signal ?? "unknown"))
  )
  return { child, env, output: () => output, exited }
}

/**
 * The URL in the service's "HTTP server listening" line (JSON logs), once it has printed it: how a
 * test learns the port of a service given `HTTP_PORT=0`.
 */
export const listeningUrlIn = (output: string): string | undefined =>
  /"url":"(http:\/\/[^"]+)"/.exec(output)?.[1]

/**
 * The URL of the service's HTTP server, from its "HTTP server listening" line (so the service must
 * log at info or below; it can then be given `HTTP_PORT=0`).
 */
export const serviceUrl = (service: ServiceProcess, timeoutMs = 60_000) =>
  Effect.gen(function* () {
    const deadline = Date.now() + timeoutMs
    while (Date.now() < deadline) {
      const url = listeningUrlIn(service.output())
      if (url !== undefined) return url
      if (service.child.exitCode !== null) break
      yield* Effect.sleep("50 millis")
    }
    return yield* Effect.die(new Error(`the service did not start:\n${service.output().slice(-4000)}`))
  })

/** When `effect` fails, show what the service printed: the test's error alone rarely says why. */
export const withServiceOutput =
  (service: ServiceProcess) =>
  <A, E, R>(effect: Effect.Effect<A, E, R>) =>
    Effect.tapErrorCause(effect, () =>
      Effect.sync(() => console.error(`service output (last 6000 chars):\n${service.output().slice(-6000)}`))
    )

/** Stop it if it still runs (test clean-up). */
export const scopedService = (env: Record<string, string>) =>
  Effect.acquireRelease(
    Effect.sync(() => startService(env)),
    (s) =>
      Effect.promise(async () => {
        if (s.child.exitCode === null && s.child.signalCode === null) {
          s.child.kill("SIGKILL")
          await s.exited
        }
      })
  )
