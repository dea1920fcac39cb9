/** What the command-line tools (`npm run produce`, `npm run dlq`) share: reading their arguments. */
import { parseArgs, type ParseArgsConfig } from "node:util"
import { Data, Effect } from "effect"

/** The command line cannot be used; the tools print it with a pointer to `--help` and exit 2. */
export class UsageError extends Data.TaggedError("UsageError")<{ readonly message: string }> {}

/** `argv` read against `options` (strictly: an unknown option is a `UsageError`), positionals allowed. */
export const parseCommandLine = <const Options extends NonNullable<ParseArgsConfig["options"]>>(
  argv: ReadonlyArray<string>,
  options: Options
) =>
  Effect.try({
    try: () => parseArgs({ args: [...argv], allowPositionals: true, strict: true, options }),
    catch: (e) => new UsageError({ message: (e as Error).message })
  })
