/**
 * `node scripts/node24.mjs COMMAND [ARGS…]`: runs COMMAND with Node 24 (the Docker image's Node)
 * first on PATH, so that it and every `node`, `npm` and `npx` it starts run on Node 24, whatever
 * Node the machine has. The binary is the npm registry's `node-<platform>-<arch>` package,
 * installed once into .cache/node24/ and used from there on; on Node 24 already, that one is used.
 */
import { spawn, spawnSync } from "node:child_process"
import { existsSync, mkdirSync, renameSync, rmSync } from "node:fs"
import path from "node:path"
import { fileURLToPath } from "node:url"

const MAJOR = 24
const pkg = `node-${process.platform}-${process.arch}`
const cacheDir = fileURLToPath(new URL(`../.cache/node${MAJOR}`, import.meta.url))
const binaryIn = (prefix) => path.join(prefix, "node_modules", pkg, "bin", "node")

const fail = (message) => {
  console.error(`node${MAJOR}: ${message}`)
  process.exit(1)
}

const versionOf = (binary) => spawnSync(binary, ["--version"], { encoding: "utf8" }).stdout?.trim() ?? ""

/** Installs into a directory of its own, then moves it into place: a download cut short is never taken for a binary. */
const install = () => {
  const tmp = `${cacheDir}.tmp-${process.pid}`
  rmSync(tmp, { recursive: true, force: true })
  mkdirSync(tmp, { recursive: true })
  const spec = `${pkg}@${MAJOR}`
  console.error(
    `node${MAJOR}: fetching ${spec} from the npm registry into ${path.relative(process.cwd(), cacheDir)}/`
  )
  const npm = spawnSync(
    "npm",
    ["install", "--no-save", "--no-package-lock", "--no-audit", "--no-fund", "--prefix", tmp, spec],
    { encoding: "utf8" }
  )
  const version = npm.status === 0 ? versionOf(binaryIn(tmp)) : ""
  if (!version.startsWith(`v${MAJOR}.`)) {
    rmSync(tmp, { recursive: true, force: true })
    // npm's first line that says what went wrong, past its code, syscall and errno lines.
    const said = `${npm.stderr ?? ""}`
      .split("\n")
      .filter((line) => /^npm (error|ERR!) /.test(line))
      .map((line) => line.replace(/^npm (error|ERR!) /, ""))
    const reason =
      npm.error?.message ??
      (npm.status === 0
        ? `the binary it installed says ${JSON.stringify(version)}`
        : (said.find((line) => !/^(code|syscall|errno) |^\s/.test(line)) ??
          said[0] ??
          `npm exited with ${npm.status ?? npm.signal}`))
    fail(`cannot get Node ${MAJOR} (npm install ${spec}): ${reason}`)
  }
  // Another run may have put one in place meanwhile; either will do.
  if (existsSync(binaryIn(cacheDir))) rmSync(tmp, { recursive: true, force: true })
  else {
    rmSync(cacheDir, { recursive: true, force: true })
    renameSync(tmp, cacheDir)
  }
}

const [command, ...args] = process.argv.slice(2)
if (command === undefined) fail("usage: node scripts/node24.mjs COMMAND [ARGS…]")

let binDir
if (Number(process.versions.node.split(".")[0]) === MAJOR) {
  binDir = path.dirname(process.execPath)
} else {
  if (!existsSync(binaryIn(cacheDir))) install()
  binDir = path.dirname(binaryIn(cacheDir))
}
console.error(`node${MAJOR}: ${[command, ...args].join(" ")} on Node ${versionOf(path.join(binDir, "node"))}`)

const child = spawn(command, args, {
  stdio: "inherit",
  env: { ...process.env, PATH: `${binDir}${path.delimiter}${process.env["PATH"] ?? ""}` }
})
// Ctrl-C reaches the child from the terminal itself; a SIGTERM sent to this process is passed on.
process.on("SIGINT", () => {})
process.on("SIGTERM", () => child.kill("SIGTERM"))
child.on("error", (error) => fail(`cannot run ${command}: ${error.message}`))
child.on("exit", (code, signal) => {
  if (signal !== null) {
    process.removeAllListeners(signal)
    process.kill(process.pid, signal)
  } else process.exit(code ?? 1)
})
