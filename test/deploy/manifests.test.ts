/**
 * The Kubernetes manifests (deploy/) are checked offline by deploy/check, a Go program: each
 * overlay rendered by kustomize, every object decoded strictly into its Kubernetes API type, the
 * ScaledObject validated against KEDA's schema, and the service's own rules. Here it runs on the
 * committed overlays, on copies broken on purpose, and the configuration each overlay gives the
 * service goes through the service's own validation.
 */
import { spawnSync } from "node:child_process"
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Effect, Either, Layer, Option } from "effect"
import { parse } from "yaml"
import { configKeys, envNameOf, makeConfigProvider, validate } from "../../src/config/AppConfig.ts"

const repo = path.resolve(import.meta.dirname, "../..")
const hasGo = spawnSync("go", ["version"], { encoding: "utf8" }).status === 0
// Never fetch another Go toolchain: go.mod asks for the one installed.
const goEnv = { ...process.env, GOTOOLCHAIN: "local" }

let work = ""
let check = ""

/** Runs the built check with `args` from the repository's root; its exit status and output. */
const runCheck = (...args: Array<string>) => {
  const result = spawnSync(check, args, { cwd: repo, encoding: "utf8", timeout: 120_000 })
  return { status: result.status, stdout: result.stdout, stderr: result.stderr }
}

/** A copy of what the check reads (deploy/, config/, src/main.ts) with `file` edited: `from` → `to`. */
const brokenCopy = (file: string, from: string, to: string): string => {
  const root = mkdtempSync(path.join(work, "repo-"))
  cpSync(path.join(repo, "deploy"), path.join(root, "deploy"), {
    recursive: true,
    filter: (source) => !source.startsWith(path.join(repo, "deploy", "check"))
  })
  cpSync(path.join(repo, "config"), path.join(root, "config"), { recursive: true })
  mkdirSync(path.join(root, "src"))
  cpSync(path.join(repo, "src", "main.ts"), path.join(root, "src", "main.ts"))
  const target = path.join(root, file)
  const text = readFileSync(target, "utf8")
  expect(text, `${file} has ${from}`).toContain(from)
  writeFileSync(target, text.replace(from, to))
  return root
}

const overlays = ["dev", "production"]

if (!hasGo)
  it.skip("deploy/ is checked by deploy/check, a Go program: skipped, `go` is not on PATH here", () => {})

describe.skipIf(!hasGo)("the Kubernetes manifests (deploy/)", () => {
  beforeAll(() => {
    work = mkdtempSync(path.join(tmpdir(), "deploy-check-"))
    check = path.join(work, "check")
    // The first build downloads the modules go.sum pins; later ones come from Go's caches.
    const build = spawnSync("go", ["-C", "deploy/check", "build", "-mod=readonly", "-o", check, "."], {
      cwd: repo,
      env: goEnv,
      encoding: "utf8",
      timeout: 1_200_000
    })
    expect(build.status, build.stderr).toBe(0)
  }, 1_260_000)

  afterAll(() => {
    if (work !== "") rmSync(work, { recursive: true, force: true })
  })

  it("every overlay renders, decodes strictly and keeps the service's rules", () => {
    const { status, stdout } = runCheck()
    expect(stdout).not.toMatch(/error:/)
    expect(status).toBe(0)
    expect(stdout).toMatch(/^ok: 2 overlay\(s\), \d+ objects, no errors$/m)
    const kinds = (overlay: string) => {
      const section = stdout.split(/^overlay /m).find((s) => s.startsWith(`${overlay}:`)) ?? ""
      return [...section.matchAll(/^ {2}(\w+) [\w-]+\//gm)].map((m) => m[1]).sort()
    }
    const common = [
      "ConfigMap",
      "ConfigMap",
      "Deployment",
      "NetworkPolicy",
      "PodDisruptionBudget",
      "Secret",
      "Service",
      "ServiceAccount"
    ]
    expect(kinds("dev")).toEqual(common)
    expect(kinds("production")).toEqual([...common, "ScaledObject"].sort())
  })

  it.effect("the configuration each overlay gives the service passes the service's own validation", () =>
    Effect.gen(function* () {
      const variables = new Set((yield* configKeys).map((key) => envNameOf(key.split("."))))
      for (const overlay of overlays) {
        const { status, stdout, stderr } = runCheck("-env", overlay)
        expect(stderr, overlay).toBe("")
        expect(status, overlay).toBe(0)
        const containers = JSON.parse(stdout) as Array<{ env: Record<string, string>; configFile: string }>
        expect(containers, overlay).toHaveLength(1)
        const { env, configFile } = containers[0]!
        // Every variable is a key of the service's (a misspelt one would be ignored), Node's or
        // OpenTelemetry's.
        for (const name of Object.keys(env))
          if (!["CONFIG_FILE", "NODE_OPTIONS"].includes(name) && !name.startsWith("OTEL_"))
            expect(variables.has(name), `${overlay}: ${name} is no configuration key's variable`).toBe(true)
        const config = yield* validate.pipe(
          Effect.provide(Layer.setConfigProvider(makeConfigProvider(parse(configFile), env))),
          Effect.either
        )
        if (Either.isLeft(config)) expect.fail(`${overlay}: ${config.left.message}`)
        const settings = Either.getOrThrow(config)
        // Its own PostgreSQL and Kafka, not the embedded ones; one process a pod; sign-in configured.
        expect(Option.isSome(settings.database.url), overlay).toBe(true)
        expect(Option.isSome(settings.kafka.brokers), overlay).toBe(true)
        expect(settings.http.workers, overlay).toBe(1)
        expect(settings.auth.mode, overlay).toBe("required")
      }
    })
  )

  it.each([
    {
      what: "a misspelt field of a Deployment (strict decoding)",
      file: "deploy/base/deployment.yaml",
      from: "livenessProbe:",
      to: "livenesProbe:",
      expected: /unknown field "spec\.template\.spec\.containers\[0\]\.livenesProbe"/
    },
    {
      what: "a misspelt field of the ScaledObject (KEDA's schema)",
      file: "deploy/overlays/production/scaledobject.yaml",
      from: "  pollingInterval: 15",
      to: "  pollingIntervall: 15",
      expected: /additional properties 'pollingIntervall' not allowed/
    },
    {
      what: "a grace period shorter than the service's shutdown (the service's rules)",
      file: "deploy/base/deployment.yaml",
      from: "terminationGracePeriodSeconds: 60",
      to: "terminationGracePeriodSeconds: 40",
      expected: /terminationGracePeriodSeconds 40 is not above .* = 45s/
    }
  ])("fails on $what", ({ file, from, to, expected }) => {
    const { status, stdout } = runCheck("-root", brokenCopy(file, from, to))
    expect(stdout).toMatch(expected)
    expect(status).toBe(1)
  })
})
