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
import { freePort } from "../../src/local/freePort.ts"
import { fixturesDir } from "../support/fixtures.ts"

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

afterAll(() => rmSync(copy, { recursive: true, force: true }))

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

/** Processes whose command line mentions the copy (its java and postgres), ours excepted. */
const leftovers = (): Array<string> =>
  readdirSync("/proc")
    .filter((p) => /^\d+$/.test(p) && Number(p) !== process.pid)
    .flatMap((p) => {
      try {
        const cmd = readFileSync(`/proc/${p}/cmdline`, "utf8").replace(/\0/g, " ")
        return cmd.includes(copy) || cmd.includes("order-service-postgres")
          ? [`${p}: ${cmd.slice(0, 120)}`]
          : []
      } catch {
        return []
      }
    })

const startAndServe = async (label: string) => {
  const port = await freePort()
  const url = `http://127.0.0.1:${port}`
  const t0 = Date.now()
  const started = npmStart({ HTTP_PORT: String(port), LOG_FORMAT: "json" })
  try {
    await waitFor("/readyz says ready", async () => (await fetch(`${url}/readyz`)).status === 200, started)
    const readyS = (Date.now() - t0) / 1000
    console.info(`npm start (${label}): ready in ${readyS.toFixed(1)} s`)
    const produced = execFileSync(
      "npm",
      ["run", "produce", "--", path.join(fixturesDir, "valid/model.json")],
      {
        cwd: copy,
        encoding: "utf8"
      }
    )
    expect(produced).toMatch(/1/)
    await waitFor(
      "the produced order is served",
      async () => (await fetch(`${url}/order/b563feb7b2b84b6test`)).status === 200,
      started,
      60_000
    )
    const order = await (await fetch(`${url}/order/b563feb7b2b84b6test`)).json()
    expect(order.payment.amount).toBe(1817)
  } finally {
    process.kill(-started.child.pid!, "SIGINT")
  }
  const code = await Promise.race([
    started.exited,
    new Promise((r) => setTimeout(() => r("still running"), 30_000))
  ])
  // npm itself dies of the SIGINT; the service under it must have stopped cleanly.
  expect(["SIGINT", 0, 130], started.output().slice(-3000)).toContain(code)
  expect(started.output()).toContain("Order service stopped")
  expect(started.output()).toContain("Stopped the embedded PostgreSQL server")
  expect(leftovers()).toEqual([])
}

describe("npm start on a fresh copy", () => {
  it("comes up on its own PostgreSQL and Kafka, serves a produced order, and Ctrl-C leaves no process behind", async () => {
    await startAndServe("cold")
    // Data kept in .data/: the second start finds the order already there.
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
    const started = npmStart({ PATH: bin, JAVA_HOME: "", HTTP_PORT: String(await freePort()) })
    const code = await Promise.race([
      started.exited,
      new Promise((r) => setTimeout(() => r("still running"), 60_000))
    ])
    if (code === "still running") process.kill(-started.child.pid!, "SIGKILL")
    expect(code).not.toBe(0)
    expect(started.output()).toMatch(/order-service: .*(Java|java).*(KAFKA_BROKERS)/)
    expect(started.output()).not.toMatch(/^\s+at /m)
    expect(leftovers()).toEqual([])
  }, 120_000)
})
