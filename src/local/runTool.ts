/**
 * Runs a command-line tool to its end (`java -version`, Maven, Kafka's storage formatter, initdb),
 * keeping what it printed so that a failure can say why.
 */
import { Command, type CommandExecutor } from "@effect/platform"
import type { PlatformError } from "@effect/platform/Error"
import { Duration, Effect, Fiber, Option, Stream } from "effect"

export interface ToolResult {
  /** `None` when a signal ended it, or it was killed at the time limit. */
  readonly exitCode: Option.Option<number>
  /** Its stdout and stderr, as they came. */
  readonly output: string
  readonly timedOut: boolean
}

/** Fails only when the tool cannot be started at all (not found, not executable). */
export const runTool = (
  command: Command.Command,
  timeout: Duration.DurationInput
): Effect.Effect<ToolResult, PlatformError, CommandExecutor.CommandExecutor> =>
  Effect.scoped(
    Effect.gen(function* () {
      const process = yield* Command.start(command)
      const text = (stream: Stream.Stream<Uint8Array, PlatformError>) =>
        stream.pipe(
          Stream.decodeText(),
          Stream.catchAll(() => Stream.empty)
        )
      const output = yield* Stream.merge(text(process.stdout), text(process.stderr)).pipe(
        Stream.runFold("", (all, chunk) => all + chunk),
        Effect.fork
      )
      const exitCode = yield* process.exitCode.pipe(
        Effect.option,
        Effect.timeoutTo({
          duration: timeout,
          onSuccess: (code) => ({ code, timedOut: false }),
          onTimeout: () => ({ code: Option.none<number>(), timedOut: true })
        })
      )
      if (exitCode.timedOut) yield* process.kill("SIGKILL").pipe(Effect.ignore)
      // The pipes close once the tool has exited, unless something it started still holds them.
      const printed = yield* Fiber.join(output).pipe(
        Effect.timeout(Duration.seconds(5)),
        Effect.orElseSucceed(() => "")
      )
      return {
        exitCode: exitCode.code,
        output: exitCode.timedOut
          ? `${printed}\n(killed after ${Duration.format(Duration.decode(timeout))})`
          : printed,
        timedOut: exitCode.timedOut
      }
    })
  )

/** The last of `text`'s lines that looks like an error (else its last line), for a one-line reason. */
export const reasonIn = (text: string): string => {
  const lines = text
    .split("\n")
    .map((line) => line.trim())
    // Java stack frames say where, not why.
    .filter((line) => line !== "" && !/^at |^\.\.\. \d+ more/.test(line))
  const problem = lines.findLast((line) => /\b(ERROR|FATAL|PANIC|Exception|Error)\b|error:/.test(line))
  return problem ?? lines.at(-1) ?? "(no output)"
}
