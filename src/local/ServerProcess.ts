/**
 * A local server as a child process (a Kafka broker's JVM, PostgreSQL) for the life of a scope:
 * its output appended to a log file, started once it prints its ready line, and asked to stop when
 * the scope closes (its stop signal, then SIGKILL after a grace period).
 *
 * It runs in a process group of its own, so a Ctrl-C meant for the service does not reach it: the
 * service drains first and stops its servers last. Nor does it outlive the process that started
 * it: an exit hook signals it on any exit Node sees, and a watchdog shell on deaths Node does not
 * see (SIGKILL of a test worker).
 */
import { spawn } from "node:child_process"
import { Command, type CommandExecutor, FileSystem } from "@effect/platform"
import type { PlatformError } from "@effect/platform/Error"
import { Data, Deferred, Duration, Effect, Fiber, Ref, type Scope, Stream } from "effect"
import { reasonIn } from "./runTool.ts"

export class ServerProcessError extends Data.TaggedError("ServerProcessError")<{
  readonly message: string
  readonly cause?: unknown
}> {}

export interface ServerProcessOptions {
  /** For messages: "Kafka broker 0 on 127.0.0.1:9092". */
  readonly name: string
  readonly command: Command.Command
  /** Where its output goes (appended). */
  readonly logFile: string
  /** Another log of its own to read the reason from when it fails to start (Kafka's server.log). */
  readonly reasonFile?: string
  /** The line of output that says it is ready. */
  readonly readyLine: string
  readonly startTimeout: Duration.DurationInput
  /** How it is asked to stop, and how long it may take before it is killed. */
  readonly stopSignal: NodeJS.Signals
  readonly stopTimeout: Duration.DurationInput
  /** What it gets if this process ends without stopping it (from the exit hook or the watchdog). */
  readonly orphanSignal: NodeJS.Signals
  /** A file holding its pid while it runs. */
  readonly pidFile?: string
}

export interface ServerProcess {
  readonly pid: number
  readonly isRunning: Effect.Effect<boolean>
  /** Sends `signal` to the server itself (not its process group); false once it has exited. */
  readonly signal: (signal: NodeJS.Signals) => Effect.Effect<boolean>
  /** Completes once it has exited. */
  readonly exited: Effect.Effect<void>
}

// Every server started here, and the signal it gets if this process exits without stopping it.
const live = new Map<number, NodeJS.Signals>()
let exitHookInstalled = false
const installExitHook = () => {
  if (exitHookInstalled) return
  exitHookInstalled = true
  process.once("exit", () => {
    for (const [pid, signal] of live) {
      try {
        process.kill(pid, signal)
      } catch {
        // already gone
      }
    }
  })
}

/** A shell that signals `pid` once this Node process is gone, and ends when `pid` does. */
const watchdog = (pid: number, signal: NodeJS.Signals) => {
  const script =
    'while kill -0 "$1" 2>/dev/null; do kill -0 "$2" 2>/dev/null || exit 0; sleep 1; done; kill -s "$3" "$2" 2>/dev/null'
  try {
    const child = spawn(
      "sh",
      ["-c", script, "local-server-watchdog", String(process.pid), String(pid), signal.replace(/^SIG/, "")],
      { stdio: "ignore", detached: true }
    )
    child.on("error", () => {})
    child.unref()
  } catch {
    // Without sh the exit hook still covers ordinary exits.
  }
}

const LAST_LINES = 200

/** Starts the server and waits until it is ready; it stops when the scope closes. */
export const start = (
  options: ServerProcessOptions
): Effect.Effect<
  ServerProcess,
  ServerProcessError,
  Scope.Scope | CommandExecutor.CommandExecutor | FileSystem.FileSystem
> =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const failed = (why: string) => (cause: unknown) =>
      new ServerProcessError({ message: `${options.name} ${why}: ${oneLine(cause)}`, cause })
    const log = yield* fs
      .open(options.logFile, { flag: "a" })
      .pipe(Effect.mapError(failed(`cannot write its log ${options.logFile}`)))
    // A full disk must not stop the server: its output is still read, only not kept.
    const append = (bytes: Uint8Array) => log.writeAll(bytes).pipe(Effect.ignore)
    yield* append(new TextEncoder().encode(`--- ${new Date().toISOString()} starting ${options.name}\n`))

    const child = yield* Command.start(options.command).pipe(
      Effect.mapError(failed(`could not be started (${commandLine(options.command)})`))
    )
    const pid = child.pid
    installExitHook()
    live.set(pid, options.orphanSignal)
    watchdog(pid, options.orphanSignal)
    const forget = Effect.suspend(() => {
      live.delete(pid)
      return options.pidFile === undefined ? Effect.void : fs.remove(options.pidFile).pipe(Effect.ignore)
    })
    if (options.pidFile !== undefined) {
      yield* fs.writeFileString(options.pidFile, `${pid}\n`).pipe(Effect.ignore)
    }

    const exited = child.exitCode.pipe(Effect.exit, Effect.asVoid)
    const recent = yield* Ref.make<ReadonlyArray<string>>([])
    const ready = yield* Deferred.make<void>()
    const lines = (stream: Stream.Stream<Uint8Array, PlatformError>) =>
      stream.pipe(
        Stream.tap(append),
        Stream.decodeText(),
        Stream.splitLines,
        Stream.tap((line) =>
          Ref.update(recent, (all) => [...all.slice(-(LAST_LINES - 1)), line]).pipe(
            Effect.zipRight(line.includes(options.readyLine) ? Deferred.succeed(ready, void 0) : Effect.void)
          )
        ),
        Stream.catchAll(() => Stream.empty)
      )
    const output = yield* Stream.merge(lines(child.stdout), lines(child.stderr)).pipe(
      Stream.runDrain,
      Effect.forkScoped
    )
    yield* exited.pipe(Effect.zipRight(forget), Effect.forkScoped)

    const signal = (name: NodeJS.Signals) =>
      Effect.flatMap(child.isRunning.pipe(Effect.orElseSucceed(() => false)), (running) =>
        running
          ? Effect.sync(() => {
              try {
                return process.kill(pid, name)
              } catch {
                return false
              }
            })
          : Effect.succeed(false)
      )

    // Added after the output reader, so it runs first: the server's last words reach the log.
    // Finalizers run uninterruptibly: the waits are made interruptible for their time limits to end them.
    yield* Effect.addFinalizer(() =>
      Effect.gen(function* () {
        yield* signal(options.stopSignal)
        yield* exited.pipe(
          Effect.interruptible,
          Effect.timeoutTo({
            duration: options.stopTimeout,
            onSuccess: () => Effect.void,
            onTimeout: () => signal("SIGKILL").pipe(Effect.zipRight(exited))
          }),
          Effect.flatten
        )
        yield* forget
        yield* Fiber.await(output).pipe(
          Effect.interruptible,
          Effect.timeout(Duration.seconds(2)),
          Effect.ignore
        )
      })
    )

    const outcome = yield* Deferred.await(ready).pipe(
      Effect.as("ready" as const),
      Effect.race(exited.pipe(Effect.as("exited" as const))),
      Effect.timeoutTo({
        duration: options.startTimeout,
        onSuccess: (outcome) => outcome,
        onTimeout: () => "timeout" as const
      })
    )
    if (outcome === "ready") {
      return { pid, isRunning: child.isRunning.pipe(Effect.orElseSucceed(() => false)), signal, exited }
    }

    if (outcome === "timeout") yield* signal("SIGKILL").pipe(Effect.zipRight(exited))
    const code = yield* child.exitCode.pipe(
      Effect.map((code) => `code ${code}`),
      Effect.orElseSucceed(() => "killed by a signal")
    )
    yield* Fiber.await(output).pipe(Effect.timeout(Duration.seconds(2)), Effect.ignore)
    const printed = (yield* Ref.get(recent)).join("\n")
    const logged =
      options.reasonFile === undefined
        ? ""
        : yield* fs.readFileString(options.reasonFile).pipe(
            Effect.map((text) => text.slice(-65_536)),
            Effect.orElseSucceed(() => "")
          )
    const why =
      outcome === "timeout"
        ? `did not say "${options.readyLine}" within ${Duration.format(Duration.decode(options.startTimeout))}`
        : `exited (${code}) before it was ready`
    return yield* new ServerProcessError({
      message: `${options.name} ${why}: ${reasonIn(`${printed}\n${logged}`)} (its log: ${options.reasonFile ?? options.logFile})`
    })
  })

const commandLine = (command: Command.Command) =>
  Command.flatten(command)
    .map((c) => [c.command, ...c.args].join(" "))
    .join(" | ")

/** An error's message on one line. */
export const oneLine = (cause: unknown): string =>
  (cause instanceof Error ? cause.message : String(cause)).replace(/\s*\n\s*/g, " ")
