/**
 * `npm start` as a newcomer runs it, in a fresh copy of the repository: it brings up its own
 * PostgreSQL and Kafka, becomes ready, serves a produced order, and Ctrl-C leaves nothing behind.
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process"
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync
} from "node:fs"
import { tmpdir } from "node:os"
import path from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { dataDirFor } from "../../src/local/EmbeddedPostgres.ts"
import { fixturesDir } from "../support/fixtures.ts"
import { metricValue, parseMetrics } from "../support/metrics.ts"
import { listeningUrlIn } from "../support/service.ts"

const repo = process.cwd()
const copy = mkdtempSync(path.join(tmpdir(), "order-service-start-"))

// The tracked files only, as a clone has them; dependencies and the Kafka jars are shared.
for (const file of execFileSync("git", ["ls-files"], { encoding: "utf8" }).split("\n").filter(Boolean)) {
  mkdirSync(path.dirname(path.join(copy, file)), { recursive: true })
  cpSync(path.join(repo, file), path.join(copy, file))
}
symlinkSync(path.join(repo, "node_modules"), path.join(copy, "node_modules"))
mkdirSync(path.join(repo, ".cache"), { recursive: true })
symlinkSync(path.join(repo, ".cache"), path.join(copy, ".cache"))

/**
 * Where the embedded PostgreSQL keeps the copy's data when run as root: the copy is private
 * (mkdtemp makes it 0700), out of the `postgres` user's reach, so the data lives outside it.
 */
const outsideDataDir = dataDirFor(path.join(copy, ".data", "postgres"))

afterAll(() => {
  rmSync(copy, { recursive: true, force: true })
  rmSync(outsideDataDir, { recursive: true, force: true })
})

interface Started {
  readonly child: ChildProcess
  readonly output: () => string
  readonly exited: Promise<number | string>
}

const npmStart = (env: Record<string, string>): Started => {
  // Its own process group, so a signal reaches npm and everything under it, as Ctrl-C does.
  const child = spawn("npm", ["start"], { cwd: copy, env: { ...process.env, ...env }, detached: true })
  let output = ""
  child.stdout!.on("data", (d) => (output += d))
  child.stderr!.on("data", (d) => (output += d))
  return {
    child,
    output: () => output,
    exited: new Promise((r) => child.once("exit", (code, signal) => r(code ?? signal ?? "unknown")))
  }
}

const waitFor = async (
  what: string,
  check: () => Promise<boolean>,
  started: Started,
  timeoutMs = 240_000
) => {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (await check().catch(() => false)) return
    if (started.child.exitCode !== null) break
    await new Promise((r) => setTimeout(r, 250))
  }
  throw new Error(`timed out waiting until ${what}:\n${started.output().slice(-4000)}`)
}

/** The service's URL on 127.0.0.1 (it listens on every address), with the port it logged. */
const listeningUrl = async (started: Started): Promise<string> => {
  let url: string | undefined
  await waitFor(
    "the HTTP server listens",
    async () => (url = listeningUrlIn(started.output())) !== undefined,
    started
  )
  return `http://127.0.0.1:${new URL(url!).port}`
}

/**
 * How the process ended (its exit code, or the signal that ended it); a process still running
 * after `ms` is killed and fails the test.
 */
const exitWithin = async (started: Started, ms: number, after: string): Promise<number | string> => {
  let timer: NodeJS.Timeout | undefined
  const hung = Symbol("hung")
  const code = await Promise.race([
    started.exited,
    new Promise<typeof hung>((r) => (timer = setTimeout(() => r(hung), ms)))
  ])
  clearTimeout(timer)
  if (code !== hung) return code
  process.kill(-started.child.pid!, "SIGKILL")
  await started.exited
  throw new Error(`still running ${ms / 1000} s after ${after}:\n${started.output().slice(-4000)}`)
}

/** Processes whose command line mentions the copy or its data (its java and postgres), ours excepted. */
const leftovers = (): Array<string> =>
  readdirSync("/proc")
    .filter((p) => /^\d+$/.test(p) && Number(p) !== process.pid)
    .flatMap((p) => {
      try {
        const cmd = readFileSync(`/proc/${p}/cmdline`, "utf8").replace(/\0/g, " ")
        return cmd.includes(copy) || cmd.includes(outsideDataDir) ? [`${p}: ${cmd.slice(0, 120)}`] : []
      } catch {
        return []
      }
    })

const UID = "b563feb7b2b84b6test"

/**
 * `npm start` until ready; on the first start an order is produced and served, on a restart the
 * order must be served without being produced again. Then Ctrl-C.
 */
const startAndServe = async (label: "cold" | "warm") => {
  const t0 = Date.now()
  // Any free port, read back from the log: one picked beforehand could be taken by an outgoing
  // connection before the service binds it.
  const started = npmStart({ HTTP_PORT: "0", LOG_FORMAT: "json" })
  let failure: { readonly error: unknown } | undefined
  try {
    const url = await listeningUrl(started)
    await waitFor("/readyz says ready", async () => (await fetch(`${url}/readyz`)).status === 200, started)
    const readyS = (Date.now() - t0) / 1000
    console.info(`npm start (${label}): ready in ${readyS.toFixed(1)} s`)
    const dataDir = /"message":"Started the embedded PostgreSQL server".*"data_dir":"([^"]+)"/.exec(
      started.output()
    )?.[1]
    expect([path.join(copy, ".data", "postgres"), outsideDataDir]).toContain(dataDir)
    if (label === "cold") {
      expect((await fetch(`${url}/order/${UID}`)).status).toBe(404)
      const produced = execFileSync(
        "npm",
        ["run", "--silent", "produce", "--", path.join(fixturesDir, "valid/model.json")],
        { cwd: copy, encoding: "utf8" }
      )
      // The producer's summary: the one file, sent as one valid message to the service's topic.
      expect(produced).toMatch(/^sent +1 messages to orders in /m)
      expect(produced).toMatch(/^valid +1, of which 0 duplicates$/m)
      expect(produced).toMatch(/^invalid +0:/m)
      await waitFor(
        "the produced order is served",
        async () => (await fetch(`${url}/order/${UID}`)).status === 200,
        started,
        60_000
      )
    }
    // Ready means warm: after a restart the order is there at once, read back from .data/.
    const response = await fetch(`${url}/order/${UID}`)
    expect(response.status, started.output().slice(-3000)).toBe(200)
    const order = await response.json()
    expect(order.order_uid).toBe(UID)
    expect(order.payment.amount).toBe(1817)
    // The first start stored it from Kafka; the second stored nothing: the order survived. (The
    // counter moves just after a batch is committed and cached, so the first start may lag.)
    const stored = async () =>
      metricValue(parseMetrics(await (await fetch(`${url}/metrics`)).text()), "ingest_orders_stored_total")
    if (label === "cold")
      await waitFor("the stored order is counted", async () => (await stored()) >= 1, started, 10_000)
    expect(await stored()).toBe(label === "cold" ? 1 : 0)
  } catch (error) {
    failure = { error }
  }
  process.kill(-started.child.pid!, "SIGINT")
  // npm ends by the SIGINT whatever the service's status: the shell that runs the script (dash,
  // Debian's sh) dies of the Ctrl-C once its child has exited, and npm re-raises that on itself.
  // The service's clean stop shows in its log: everything closed, then its last line.
  const code = await exitWithin(started, 30_000, "Ctrl-C")
  if (failure !== undefined) throw failure.error
  expect(code, started.output().slice(-3000)).toBe("SIGINT")
  const lines = started.output().trimEnd().split("\n")
  expect(lines.some((l) => l.includes('"message":"Stopped the embedded PostgreSQL server"'))).toBe(true)
  expect(lines.some((l) => l.includes('"message":"Stopped the local Kafka broker"'))).toBe(true)
  expect(lines.at(-1)).toContain('"message":"Order service stopped"')
  expect(leftovers()).toEqual([])
}

describe("npm start on a fresh copy", () => {
  it("comes up on its own PostgreSQL and Kafka, serves a produced order, serves it again after a restart without producing it again, and Ctrl-C stops it cleanly leaving no process behind", async () => {
    await startAndServe("cold")
    // Data kept in .data/: the second start serves the order without it being produced again.
    await startAndServe("warm")
  }, 600_000)

  it("without Java and without KAFKA_BROKERS it says what to install or set, in one line", async () => {
    // Everything on the PATH but Java and Maven.
    const bin = path.join(copy, ".bin-without-java")
    mkdirSync(bin)
    for (const dir of (process.env["PATH"] ?? "").split(":").filter((d) => d !== "" && existsSync(d))) {
      for (const name of readdirSync(dir)) {
        if (/^(java|javac|mvn|mvnDebug)$/.test(name) || existsSync(path.join(bin, name))) continue
        symlinkSync(path.join(dir, name), path.join(bin, name))
      }
    }
    const started = npmStart({ PATH: bin, JAVA_HOME: "", HTTP_PORT: "0" })
    // A start-up failure: the service says why and exits 1, and npm with it.
    expect(await exitWithin(started, 60_000, "start-up without Java"), started.output().slice(-3000)).toBe(1)
    expect(started.output()).toMatch(/order-service: .*(Java|java).*(KAFKA_BROKERS)/)
    expect(started.output()).not.toMatch(/^\s+at /m)
    expect(leftovers()).toEqual([])
  }, 120_000)
})
