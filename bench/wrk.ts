/**
 * `wrk` (Debian package `wrk`) as the HTTP load generator: it is written in C and does not compete
 * with the service for the JavaScript thread the way a Node load generator does. Each request asks
 * for a path picked at random from a file (bench/random-path.lua).
 */
import { execFileSync, spawn } from "node:child_process"
import { writeFileSync } from "node:fs"
import path from "node:path"

export interface WrkResult {
  readonly rps: number
  readonly p50Ms: number
  readonly p90Ms: number
  readonly p99Ms: number
  readonly maxMs: number
  /** Responses outside 2xx/3xx, and socket errors (connect, read, write, timeout). */
  readonly non2xx: number
  readonly socketErrors: number
}

/** Stops the benchmark with a clear message when `wrk` is not installed. */
export const requireWrk = () => {
  try {
    execFileSync("wrk", ["--version"], { stdio: "ignore" })
  } catch (error) {
    // wrk --version exits 1 after printing its version; only a missing binary throws ENOENT.
    if ((error as NodeJS.ErrnoException).code === "ENOENT") {
      console.error("The HTTP benchmark measures with wrk, which is not installed: apt-get install wrk")
      process.exit(2)
    }
  }
}

const ms = (value: string, unit: string) =>
  Number(value) * (unit === "us" ? 0.001 : unit === "s" ? 1000 : unit === "m" ? 60_000 : 1)

/** Reads wrk's `--latency` report. */
export const parseWrk = (output: string): WrkResult => {
  const percentile = (p: string) => {
    const match = new RegExp(`^\\s+${p}%\\s+([\\d.]+)(us|ms|s|m)\\s*$`, "m").exec(output)
    return match ? ms(match[1]!, match[2]!) : Number.NaN
  }
  const max = /^\s+Latency\s+\S+\s+\S+\s+([\d.]+)(us|ms|s|m)/m.exec(output)
  const errors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(output)
  return {
    rps: Number(/^Requests\/sec:\s+([\d.]+)/m.exec(output)?.[1] ?? Number.NaN),
    p50Ms: percentile("50"),
    p90Ms: percentile("90"),
    p99Ms: percentile("99"),
    maxMs: max ? ms(max[1]!, max[2]!) : Number.NaN,
    non2xx: Number(/Non-2xx or 3xx responses: (\d+)/.exec(output)?.[1] ?? 0),
    socketErrors: errors ? errors.slice(1).reduce((sum, n) => sum + Number(n), 0) : 0
  }
}

/**
 * `connections` connections on one thread for `seconds`, each request a path from `paths` at
 * random (written to a file next to the results). Resolves with the figures and wrk's own report.
 */
export const wrk = (
  base: string,
  paths: ReadonlyArray<string>,
  options: {
    readonly connections: number
    readonly seconds: number
    readonly name: string
    /** Sent with every request, e.g. `Authorization: Bearer …`. */
    readonly headers?: Readonly<Record<string, string>>
    /** The core wrk is pinned to (`taskset -c`); unset, wherever the scheduler puts it. */
    readonly cpu?: number
  }
): Promise<WrkResult & { readonly report: string }> => {
  const file = path.resolve(`bench/results/paths-${options.name.replace(/\W+/g, "-")}.txt`)
  writeFileSync(file, paths.join("\n") + "\n")
  const args = [
    "-t1",
    `-c${options.connections}`,
    `-d${options.seconds}s`,
    "--latency",
    ...Object.entries(options.headers ?? {}).flatMap(([name, value]) => ["-H", `${name}: ${value}`]),
    "-s",
    path.resolve("bench/random-path.lua"),
    base,
    "--",
    file
  ]
  return new Promise((resolve, reject) => {
    const child =
      options.cpu === undefined
        ? spawn("wrk", args, { stdio: ["ignore", "pipe", "inherit"] })
        : spawn("taskset", ["-c", String(options.cpu), "wrk", ...args], {
            stdio: ["ignore", "pipe", "inherit"]
          })
    let output = ""
    child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()))
    child.on("error", reject)
    child.on("exit", (code) =>
      code === 0 ? resolve({ ...parseWrk(output), report: output }) : reject(new Error(`wrk exited ${code}`))
    )
  })
}
