/**
 * No Docker engine runs where the tests run, so the compose file is kept honest by reading it:
 * its services, ports, variables and topics must agree with the code and the config files, and
 * the Keycloak realm it imports with the service's sign-in settings.
 */
import { execFile, execFileSync } from "node:child_process"
import { existsSync, readFileSync } from "node:fs"
import { createServer } from "node:http"
import type { AddressInfo } from "node:net"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Either, Layer, Option, Redacted } from "effect"
import { parse } from "yaml"
import {
  configKeys,
  envNameOf,
  makeConfigProvider,
  readConfigFile,
  validate
} from "../../src/config/AppConfig.ts"

interface Service {
  image?: string
  build?: unknown
  profiles?: Array<string>
  environment?: Record<string, unknown>
  ports?: Array<unknown>
  command?: unknown
  depends_on?: Record<string, { condition?: string }>
  volumes?: Array<string>
  healthcheck?: { test?: Array<string> }
  network_mode?: string
}
interface Compose {
  services: Record<string, Service>
  volumes?: Record<string, unknown>
}

/** A compose variable reference: `${NAME}`, `${NAME:-default}`, `${NAME:?error}`, `$NAME`… */
const REFERENCE = /\$(?:\$|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?)([-?+])([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))/g

/** Compose's interpolation of one value, in the forms above (`$$` is a literal `$`). */
const interpolate = (value: string, env: Readonly<Record<string, string>>): string =>
  value.replace(
    REFERENCE,
    (whole, braced?: string, colon?: string, op?: string, arg?: string, bare?: string) => {
      if (whole === "$$") return "$"
      const name = (braced ?? bare)!
      const set = colon === ":" ? (env[name] ?? "") !== "" : env[name] !== undefined
      switch (op) {
        case "-":
          return set ? env[name]! : arg!
        case "?":
          if (!set) throw new Error(`${name}: ${arg}`)
          return env[name]!
        case "+":
          return set ? arg! : ""
        default:
          return env[name] ?? ""
      }
    }
  )

/** Every string of a parsed document, interpolated (compose interpolates values, not comments). */
const interpolateAll = (node: unknown, env: Readonly<Record<string, string>>): unknown =>
  typeof node === "string"
    ? interpolate(node, env)
    : Array.isArray(node)
      ? node.map((n) => interpolateAll(n, env))
      : node !== null && typeof node === "object"
        ? Object.fromEntries(Object.entries(node).map(([k, v]) => [k, interpolateAll(v, env)]))
        : node

const stringsOf = (node: unknown): Array<string> =>
  typeof node === "string"
    ? [node]
    : Array.isArray(node)
      ? node.flatMap(stringsOf)
      : node !== null && typeof node === "object"
        ? Object.values(node).flatMap(stringsOf)
        : []

/** `.env.example`: each variable, its value there, and the comment lines just above it. */
const envExampleText = readFileSync(".env.example", "utf8")
const envExample = (() => {
  const vars: Array<{ name: string; value: string; comment: Array<string> }> = []
  let comment: Array<string> = []
  for (const line of envExampleText.split("\n")) {
    if (line.startsWith("#")) comment.push(line)
    else if (line.trim() === "") comment = []
    else {
      const m = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line)
      if (m === null) throw new Error(`.env.example: not NAME=value: ${line}`)
      vars.push({ name: m[1]!, value: m[2]!, comment })
      comment = []
    }
  }
  return vars
})()
const composeText = readFileSync("docker-compose.yml", "utf8")
/** As written, references and all. */
const raw = parse(composeText, { merge: true }) as Compose
const references = [...new Set(stringsOf(raw).flatMap((s) => [...s.matchAll(REFERENCE)]))].filter(
  (m) => m[0] !== "$$"
)
/** `${NAME:?…}`: compose refuses to start without them. */
const required = new Set(references.filter((m) => m[3] === "?").map((m) => m[1]!))
const referenced = new Set(references.map((m) => (m[1] ?? m[5])!))

/**
 * `.env.example` as a user fills it in: every required value given one (letters and digits). One
 * missing there is given one too, so that the test of .env.example, not loading, says so.
 */
const filledEnv: Record<string, string> = {
  ...Object.fromEntries([...required].map((name) => [name, `test${name.replace(/_/g, "").toLowerCase()}`])),
  ...Object.fromEntries(envExample.filter((v) => v.value !== "").map((v) => [v.name, v.value]))
}
/** As compose runs it with a filled-in .env. */
const compose = interpolateAll(raw, filledEnv) as Compose
const services = compose.services
const serviceEnv = Object.fromEntries(
  Object.entries(services["order-service"]!.environment ?? {}).map(([k, v]) => [k, String(v)])
)
const rawEnvOf = (service: string): Record<string, string> =>
  Object.fromEntries(Object.entries(raw.services[service]!.environment ?? {}).map(([k, v]) => [k, String(v)]))
interface ProtocolMapper {
  name: string
  protocolMapper: string
  config: Record<string, string>
}
interface Client {
  clientId: string
  enabled?: boolean
  publicClient?: boolean
  secret?: string
  standardFlowEnabled?: boolean
  implicitFlowEnabled?: boolean
  directAccessGrantsEnabled?: boolean
  serviceAccountsEnabled?: boolean
  redirectUris?: Array<string>
  webOrigins?: Array<string>
  attributes?: Record<string, string>
  protocolMappers?: Array<ProtocolMapper>
  defaultClientScopes?: Array<string>
}
interface User {
  username: string
  enabled?: boolean
  email?: string
  emailVerified?: boolean
  firstName?: string
  lastName?: string
  credentials?: Array<{ type: string; value: string; temporary?: boolean }>
  realmRoles?: Array<string>
  serviceAccountClientId?: string
}
interface Realm {
  realm: string
  enabled: boolean
  roles: { realm: Array<{ name: string; composite?: boolean; composites?: { realm?: Array<string> } }> }
  clients: Array<Client>
  users: Array<User>
}

const keycloak = services["keycloak"]!
const keycloakEnv = Object.fromEntries(
  Object.entries(keycloak.environment ?? {}).map(([k, v]) => [k, String(v)])
)
/** The realm file and where the keycloak service mounts it. */
const realmMount = (keycloak.volumes ?? [])
  .map((v) => v.split(":"))
  .find(([, target]) => target!.startsWith("/opt/keycloak/data/import/"))
const realmText = readFileSync(realmMount?.[0] ?? "config/keycloak/orders-realm.json", "utf8")
const realm = JSON.parse(realmText) as Realm
const client = (id: string) => realm.clients.find((c) => c.clientId === id)
const user = (name: string) => realm.users.find((u) => u.username === name)
const mappers = (c: Client | undefined, type: string) =>
  (c?.protocolMappers ?? []).filter((m) => m.protocolMapper === type)

/** The service's configuration as compose starts it. */
const serviceConfig = Effect.gen(function* () {
  const file = readConfigFile(serviceEnv["CONFIG_FILE"]!)
  const config = yield* validate.pipe(
    Effect.provide(Layer.setConfigProvider(makeConfigProvider(file, serviceEnv))),
    Effect.either
  )
  if (Either.isLeft(config)) throw config.left
  return config.right
})

describe("docker-compose.yml agrees with the code", () => {
  it("has PostgreSQL on 5433, three Kafka brokers, the topic step, Kafka UI on 8080, Keycloak on 8180, the service on 8081, Jaeger, Prometheus and Grafana", () => {
    expect(Object.keys(services).sort()).toEqual(
      [
        "grafana",
        "jaeger",
        "kafka-topics",
        "kafka-ui",
        "kafka1",
        "kafka2",
        "kafka3",
        "keycloak",
        "order-service",
        "postgres",
        "prometheus"
      ].sort()
    )
    expect(services["postgres"]!.ports).toContain("127.0.0.1:5433:5432")
    expect(services["kafka-ui"]!.ports).toContain("127.0.0.1:8080:8080")
    expect(services["keycloak"]!.ports).toContain("127.0.0.1:8180:8180")
    expect(services["order-service"]!.ports).toContain("127.0.0.1:8081:8081")
    for (const broker of ["kafka1", "kafka2", "kafka3"]) {
      const env = services[broker]!.environment!
      expect(String(env["KAFKA_PROCESS_ROLES"]), broker).toBe("broker,controller")
      expect(Number(env["KAFKA_DEFAULT_REPLICATION_FACTOR"]), broker).toBe(3)
      expect(Number(env["KAFKA_MIN_INSYNC_REPLICAS"]), broker).toBe(2)
      expect(String(env["KAFKA_CONTROLLER_QUORUM_VOTERS"]).split(",")).toHaveLength(3)
    }
  })

  it("every published port is bound to 127.0.0.1, so nothing is reachable from other machines", () => {
    const published = Object.entries(raw.services).flatMap(([name, s]) =>
      (s.ports ?? []).map((p) => [name, p])
    )
    expect(published.length).toBeGreaterThan(0)
    for (const [name, port] of published) {
      if (typeof port === "string")
        expect(port, name as string).toMatch(/^127\.0\.0\.1:\d+:\d+(\/(tcp|udp))?$/)
      else expect((port as { host_ip?: string }).host_ip, name as string).toBe("127.0.0.1")
    }
    for (const [name, s] of Object.entries(raw.services)) expect(s.network_mode, name).not.toBe("host")
  })

  it("Kafka UI is a tool, started only with --profile tools; everything else starts with `up`", () => {
    expect(services["kafka-ui"]!.profiles).toEqual(["tools"])
    for (const [name, s] of Object.entries(services))
      if (name !== "kafka-ui") expect(s.profiles, `${name} is not in a profile`).toBeUndefined()
  })

  it("every Kafka broker keeps its log directories on a mounted named volume, so topics outlive the containers", () => {
    const brokers = Object.entries(services).filter(([, s]) =>
      String(s.environment?.["KAFKA_PROCESS_ROLES"] ?? "").includes("broker")
    )
    expect(brokers.map(([name]) => name).sort()).toEqual(["kafka1", "kafka2", "kafka3"])
    for (const [name, broker] of brokers) {
      // The apache/kafka image's default when KAFKA_LOG_DIRS is unset (configureDefaults).
      const logDirs = String(broker.environment?.["KAFKA_LOG_DIRS"] ?? "/tmp/kraft-combined-logs").split(",")
      const mounts = new Map(
        (broker.volumes ?? []).map((v) => {
          const [source, target] = v.split(":")
          return [target!, source!] as const
        })
      )
      for (const dir of logDirs) {
        const source = mounts.get(dir.trim())
        expect(source, `${name}: log directory ${dir} is not a mounted volume`).toBeDefined()
        expect(Object.keys(compose.volumes ?? {}), `${name}: ${source} is not a named volume`).toContain(
          source
        )
      }
    }
  })

  it.effect(
    "every variable the service is given is a config key the code reads, or OpenTelemetry's own (OTEL_*)",
    () =>
      Effect.gen(function* () {
        const known = new Set([...(yield* configKeys).map((k) => envNameOf(k.split("."))), "CONFIG_FILE"])
        expect(
          Object.keys(serviceEnv).filter((name) => !known.has(name) && !name.startsWith("OTEL_"))
        ).toEqual([])
      })
  )

  it.effect(
    "with its config file and variables the service's configuration is valid and points at the compose services",
    () =>
      Effect.gen(function* () {
        const c = yield* serviceConfig
        expect(c.http.port).toBe(8081)
        const brokers = Option.getOrThrow(c.kafka.brokers)
        for (const broker of brokers) {
          const [host, port] = broker.split(":")
          expect(services[host!], broker).toBeDefined()
          expect(port).toBe("9092")
        }
        expect(c.kafka.replicationFactor).toBe(3)
        const url = new URL(Redacted.value(Option.getOrThrow(c.database.url)))
        const pg = services["postgres"]!.environment!
        expect(url.hostname).toBe("postgres")
        expect(url.port).toBe("5432")
        expect(url.username).toBe(pg["POSTGRES_USER"])
        expect(url.password).toBe(pg["POSTGRES_PASSWORD"])
        expect(url.pathname).toBe(`/${pg["POSTGRES_DB"]}`)
        const topicStep = JSON.stringify(services["kafka-topics"]!.command)
        expect(topicStep).toContain(`for topic in ${c.kafka.topic} ${c.kafka.dlqTopic}`)
        expect(topicStep).toContain("--replication-factor 3")
        expect(topicStep).toContain("min.insync.replicas=2")
      })
  )

  it("the image exposes the service's port, checks /healthz and runs as a non-root user", () => {
    const dockerfile = readFileSync("Dockerfile", "utf8")
    expect(dockerfile).toMatch(/^EXPOSE 8081$/m)
    expect(dockerfile).toMatch(/HEALTHCHECK[\s\S]*\/healthz/)
    expect(dockerfile).toMatch(/^USER node$/m)
    expect(dockerfile).toMatch(/CONFIG_FILE=config\/config\.docker\.yaml/)
  })

  it("the image builds and runs on Node 24, a release package.json's engines names", () => {
    const dockerfile = readFileSync("Dockerfile", "utf8")
    expect([...dockerfile.matchAll(/^FROM (\S+)/gm)].map((m) => m[1])).toEqual([
      "node:24-bookworm-slim",
      "deps",
      "node:24-bookworm-slim"
    ])
    const pkg = JSON.parse(readFileSync("package.json", "utf8")) as { engines: { node: string } }
    expect(pkg.engines.node.split(" || ")).toContain("^24.0.0")
  })
})

describe("docker-compose.yml keeps its secrets in .env", () => {
  it("writes no secret: every password, secret, token or key is a ${…} reference, the passwords and secrets required", () => {
    for (const [name, s] of Object.entries(raw.services)) {
      expect(Array.isArray(s.environment), `${name}: environment as a mapping`).toBe(false)
      for (const [key, value] of Object.entries(rawEnvOf(name))) {
        if (!/PASSWORD|SECRET|TOKEN|KEY/i.test(key)) continue
        expect(value, `${name}: ${key}`).toMatch(/^\$\{[A-Za-z_][A-Za-z0-9_]*(:?[-?][^}]*)?\}$/)
        if (/PASSWORD|SECRET/i.test(key))
          expect(value, `${name}: ${key} must be required`).toMatch(/^\$\{\w+:\?/)
      }
    }
    // Nor inside a URL: the database URL's password is the same reference.
    for (const value of stringsOf(raw)) {
      const userinfo = /^\w+:\/\/[^/:@]+:([^@]*)@/.exec(value)
      if (userinfo !== null) expect(userinfo[1], value).toMatch(/^\$\{\w+:\?[^}]*\}$/)
    }
    expect(composeText).not.toMatch(/^\s*POSTGRES_PASSWORD:[ \t]*(?!"?\$\{)\S/m)
  })

  it("every variable the file requires or reads is in .env.example, with a comment; the required ones empty there", () => {
    const names = envExample.map((v) => v.name)
    expect(new Set(names).size, "no variable twice").toBe(names.length)
    expect([...referenced].filter((n) => !names.includes(n))).toEqual([])
    expect(
      names.filter((n) => !referenced.has(n)),
      "nothing in .env.example that compose does not read"
    ).toEqual([])
    expect([...required].sort()).toEqual(
      [
        "GRAFANA_ADMIN_PASSWORD",
        "KEYCLOAK_ADMIN_PASSWORD",
        "ORDER_SERVICE_CLI_SECRET",
        "ORDER_SERVICE_OIDC_SECRET",
        "POSTGRES_PASSWORD",
        "PROMETHEUS_SCRAPE_KEY"
      ].sort()
    )
    for (const v of envExample) {
      expect(v.comment.length, `${v.name} has a comment`).toBeGreaterThan(0)
      // An unedited copy must not start a stack with a password everyone knows.
      if (required.has(v.name)) expect(v.value, `${v.name} is empty in .env.example`).toBe("")
      if (/PASSWORD|SECRET/.test(v.name)) expect(v.value, v.name).toBe("")
    }
    // A copy left as it is stops compose, naming the variable.
    expect(() => interpolateAll(raw, Object.fromEntries(envExample.map((v) => [v.name, v.value])))).toThrow(
      /set it in \.env/
    )
  })

  it(".env is ignored by git and .env.example is not", () => {
    const ignored = (path: string) => {
      try {
        execFileSync("git", ["check-ignore", "-q", path], { stdio: "ignore" })
        return true
      } catch {
        return false
      }
    }
    expect(ignored(".env")).toBe(true)
    expect(ignored(".env.example")).toBe(false)
  })
})

describe("docker-compose.yml: sign-in through Keycloak", () => {
  it("runs a current Keycloak 26 in development mode, importing the realm file", () => {
    expect(keycloak.image).toMatch(/^quay\.io\/keycloak\/keycloak:26\.\d+\.\d+$/)
    expect(keycloak.command).toEqual(["start-dev", "--import-realm"])
    expect(realmMount, "the realm file is mounted into /opt/keycloak/data/import/").toBeDefined()
    const [source, target, mode] = realmMount!
    expect(existsSync(source!)).toBe(true)
    // Keycloak imports `<realm>-realm.json` files from that directory.
    expect(target).toBe(`/opt/keycloak/data/import/${realm.realm}-realm.json`)
    expect(mode).toBe("ro")
    expect(rawEnvOf("keycloak")["KC_BOOTSTRAP_ADMIN_PASSWORD"]).toMatch(/^\$\{KEYCLOAK_ADMIN_PASSWORD:\?/)
    expect(keycloakEnv["KC_BOOTSTRAP_ADMIN_USERNAME"]).not.toBe("")
  })

  it("the service waits for Keycloak to be ready, which a health check on the management port tells", () => {
    expect(services["order-service"]!.depends_on?.["keycloak"]?.condition).toBe("service_healthy")
    expect(keycloakEnv["KC_HEALTH_ENABLED"]).toBe("true")
    const check = keycloak.healthcheck?.test ?? []
    expect(check.slice(0, 3)).toEqual(["CMD", "bash", "-c"])
    expect(check[3]).toContain("/dev/tcp/127.0.0.1/9000")
    expect(check[3]).toContain("GET /health/ready ")
    // The management port stays inside.
    expect((keycloak.ports ?? []).some((p) => String(p).endsWith(":9000"))).toBe(false)
  })

  it("the health check's script passes on 200 from /health/ready, and fails on 503 or nothing listening", async () => {
    let status = 200
    const paths: Array<string> = []
    const server = createServer((req, res) => {
      paths.push(req.url ?? "")
      res.writeHead(status, { "content-type": "application/json" }).end('{"status":"UP","checks":[]}')
    })
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
    const port = (server.address() as AddressInfo).port
    const script = keycloak.healthcheck!.test![3]!
    const run = (p: number) =>
      new Promise<number>((resolve) =>
        execFile(
          "bash",
          ["-c", script.replace("/dev/tcp/127.0.0.1/9000", `/dev/tcp/127.0.0.1/${p}`)],
          { timeout: 5000 },
          (e) => resolve(e === null ? 0 : typeof e.code === "number" ? e.code : -1)
        )
      )
    try {
      expect(await run(port)).toBe(0)
      status = 503
      expect(await run(port)).not.toBe(0)
      expect(paths).toEqual(["/health/ready", "/health/ready"])
    } finally {
      await new Promise((resolve) => server.close(resolve))
    }
    expect(await run(port)).not.toBe(0)
  })

  it.effect("the browser and the service reach Keycloak by one URL, the issuer its tokens carry", () =>
    Effect.gen(function* () {
      const c = yield* serviceConfig
      const issuer = Option.getOrThrow(c.auth.oidc.issuer)
      expect(issuer.pathname).toBe(`/realms/${realm.realm}`)
      // Keycloak's issuer is {KC_HOSTNAME}/realms/{realm}, however a token is asked for.
      expect(issuer.origin).toBe(new URL(keycloakEnv["KC_HOSTNAME"]!).origin)
      // Inside the network the host is the keycloak service, listening on the issuer's port…
      expect(services[issuer.hostname]).toBe(keycloak)
      expect(keycloakEnv["KC_HTTP_PORT"]).toBe(issuer.port)
      // …and on the host (with `127.0.0.1 keycloak` in /etc/hosts) the same port is published.
      expect(keycloak.ports).toContain(`127.0.0.1:${issuer.port}:${issuer.port}`)
      expect(composeText).toContain(`127.0.0.1 ${issuer.hostname}`)
    })
  )

  it.effect("the service's settings are those of the realm's client order-service", () =>
    Effect.gen(function* () {
      const c = yield* serviceConfig
      expect(c.auth.mode).toBe("required")
      const web = client(c.auth.oidc.clientId)
      expect(web, `client ${c.auth.oidc.clientId} in the realm`).toBeDefined()
      const publicUrl = Option.getOrThrow(c.auth.publicUrl)
      expect(web!.redirectUris).toEqual([new URL("/auth/callback", publicUrl).href])
      expect(web!.webOrigins).toEqual([publicUrl.origin])
      expect(web!.attributes?.["post.logout.redirect.uris"]).toBe(`${publicUrl.origin}/*`)
      expect(services["order-service"]!.ports).toContain(`127.0.0.1:${publicUrl.port}:${c.http.port}`)
      // One secret, from .env, for Keycloak's import and for the service.
      const placeholder = /^\$\{(\w+)\}$/.exec(web!.secret ?? "")
      expect(placeholder, "the realm names the secret by a variable").not.toBeNull()
      expect(rawEnvOf("keycloak")[placeholder![1]!]).toBe(
        rawEnvOf("order-service")["AUTH_OIDC_CLIENT_SECRET"]
      )
      expect(Redacted.value(Option.getOrThrow(c.auth.oidc.clientSecret))).toBe(keycloakEnv[placeholder![1]!])
    })
  )

  it("config/config.docker.yaml's auth section agrees with the variables and holds no secret", () => {
    const file = readConfigFile("config/config.docker.yaml") as {
      auth: { mode: string; oidc: Record<string, unknown> }
    }
    expect(file.auth.mode).toBe("required")
    expect(file.auth.oidc["client_id"]).toBe(serviceEnv["AUTH_OIDC_CLIENT_ID"])
    expect(file.auth.oidc["roles_claim"]).toBe(serviceEnv["AUTH_OIDC_ROLES_CLAIM"])
    expect(file.auth.oidc["client_secret"]).toBeUndefined()
  })

  it("every variable the realm file names is given to Keycloak", () => {
    const names = [...realmText.matchAll(/\$\{(\w+)(?::[^}]*)?\}/g)].map((m) => m[1]!)
    expect(names.length).toBeGreaterThan(0)
    for (const name of names) expect(rawEnvOf("keycloak")[name], name).toMatch(/^\$\{\w+:\?/)
  })
})

describe("config/keycloak/orders-realm.json", () => {
  it("is the realm orders with the roles agent, operator (which includes agent) and metrics", () => {
    expect(realm.realm).toBe("orders")
    expect(realm.enabled).toBe(true)
    const roles = new Map(realm.roles.realm.map((r) => [r.name, r]))
    expect([...roles.keys()].sort()).toEqual(["agent", "metrics", "operator"])
    expect(roles.get("operator")!.composite).toBe(true)
    expect(roles.get("operator")!.composites?.realm).toEqual(["agent"])
  })

  it("has the confidential web client order-service: code flow with PKCE S256 only, its secret from the environment", () => {
    const web = client("order-service")!
    expect(web).toBeDefined()
    expect(web.enabled).toBe(true)
    expect(web.publicClient).toBe(false)
    expect(web.standardFlowEnabled).toBe(true)
    expect(web.implicitFlowEnabled).toBe(false)
    expect(web.directAccessGrantsEnabled).toBe(false)
    expect(web.serviceAccountsEnabled).toBe(false)
    expect(web.attributes?.["pkce.code.challenge.method"]).toBe("S256")
    expect(web.secret).toBe("${ORDER_SERVICE_OIDC_SECRET}")
  })

  it("has the client order-service-cli for programs: client credentials only, its service account an operator", () => {
    const cli = client("order-service-cli")!
    expect(cli).toBeDefined()
    expect(cli.publicClient).toBe(false)
    expect(cli.serviceAccountsEnabled).toBe(true)
    expect(cli.standardFlowEnabled).toBe(false)
    expect(cli.implicitFlowEnabled).toBe(false)
    expect(cli.directAccessGrantsEnabled).toBe(false)
    expect(cli.secret).toBe("${ORDER_SERVICE_CLI_SECRET}")
    const account = realm.users.find((u) => u.serviceAccountClientId === "order-service-cli")
    expect(account?.username).toBe("service-account-order-service-cli")
    expect(account?.realmRoles).toEqual(["operator"])
  })

  it.effect("both clients' access tokens name the service's audience", () =>
    Effect.gen(function* () {
      const c = yield* serviceConfig
      for (const id of ["order-service", "order-service-cli"]) {
        const audience = mappers(client(id), "oidc-audience-mapper")
        expect(audience, id).toHaveLength(1)
        expect(audience[0]!.config["included.client.audience"], id).toBe(c.auth.oidc.audience)
        expect(audience[0]!.config["access.token.claim"], id).toBe("true")
      }
    })
  )

  it.effect("the realm roles are where the service reads them (AUTH_OIDC_ROLES_CLAIM), in every token", () =>
    Effect.gen(function* () {
      const c = yield* serviceConfig
      expect(c.auth.oidc.rolesClaim).toBe("realm_access.roles")
      for (const id of ["order-service", "order-service-cli"]) {
        const roles = mappers(client(id), "oidc-usermodel-realm-role-mapper")
        expect(roles, id).toHaveLength(1)
        const config = roles[0]!.config
        expect(config["claim.name"], id).toBe(c.auth.oidc.rolesClaim)
        expect(config["multivalued"], id).toBe("true")
        // Access tokens for bearer calls; the ID token and userinfo for the sign-in.
        for (const token of ["access.token.claim", "id.token.claim", "userinfo.token.claim"])
          expect(config[token], `${id}: ${token}`).toBe("true")
        // The realm's default client scopes (roles, profile, email…) are left as they are.
        expect(client(id)!.defaultClientScopes, id).toBeUndefined()
      }
    })
  )

  it("has the demo users agent and operator, ready to sign in, with the passwords the compose file's header gives", () => {
    for (const [name, role] of [
      ["agent", "agent"],
      ["operator", "operator"]
    ] as const) {
      const u = user(name)!
      expect(u, name).toBeDefined()
      expect(u.enabled, name).toBe(true)
      expect(u.emailVerified, name).toBe(true)
      expect(u.email, name).toMatch(/^[^@\s]+@[^@\s]+$/)
      expect(u.firstName, name).toBeTruthy()
      expect(u.lastName, name).toBeTruthy()
      expect(u.realmRoles, name).toEqual([role])
      const password = u.credentials?.find((cr) => cr.type === "password")
      expect(password?.temporary, name).toBe(false)
      expect(composeText, name).toContain(`${name}/${password!.value}`)
    }
  })
})

describe("docker-compose.yml: traces, metrics and dashboards", () => {
  const mountOf = (service: string, target: string) =>
    (services[service]!.volumes ?? []).map((v) => v.split(":")).find(([, t]) => t === target)

  it("pins Jaeger 2, Prometheus 3 and Grafana 12 to a release", () => {
    expect(services["jaeger"]!.image).toMatch(/^jaegertracing\/jaeger:2\.\d+\.\d+$/)
    expect(services["prometheus"]!.image).toMatch(/^prom\/prometheus:v3\.\d+\.\d+$/)
    expect(services["grafana"]!.image).toMatch(/^grafana\/grafana:12\.\d+\.\d+$/)
  })

  it("Jaeger takes OTLP on 4318 (HTTP) and 4317 (gRPC) and shows traces on 16686, on 127.0.0.1, and the service sends it its traces", () => {
    for (const port of [16686, 4318, 4317])
      expect(services["jaeger"]!.ports).toContain(`127.0.0.1:${port}:${port}`)
    const endpoint = new URL(serviceEnv["OTEL_EXPORTER_OTLP_ENDPOINT"]!)
    expect(services[endpoint.hostname]).toBe(services["jaeger"])
    expect(endpoint.port).toBe("4318")
    expect(serviceEnv["OTEL_SERVICE_NAME"]).toBe("order-service")
  })

  it("Prometheus on 9090 reads config/prometheus/prometheus.yml, with the scrape key from .env, and keeps its data on a volume", () => {
    const prometheus = services["prometheus"]!
    expect(prometheus.ports).toContain("127.0.0.1:9090:9090")
    expect(existsSync("config/prometheus/prometheus.yml")).toBe(true)
    expect(mountOf("prometheus", "/etc/prometheus/prometheus.yml")).toEqual([
      "./config/prometheus/prometheus.yml",
      "/etc/prometheus/prometheus.yml",
      "ro"
    ])
    expect(JSON.stringify(prometheus.command)).toContain("--config.file=/etc/prometheus/prometheus.yml")
    expect(rawEnvOf("prometheus")["PROMETHEUS_SCRAPE_KEY"]).toMatch(/^\$\{PROMETHEUS_SCRAPE_KEY:\?/)
    expect(Object.keys(compose.volumes ?? {})).toContain(mountOf("prometheus", "/prometheus")?.[0])
    expect(prometheus.depends_on?.["order-service"]).toBeDefined()
  })

  it("Grafana on 3000 is provisioned from config/grafana/, its admin password from .env, sign-up off", () => {
    const grafana = services["grafana"]!
    expect(grafana.ports).toContain("127.0.0.1:3000:3000")
    expect(mountOf("grafana", "/etc/grafana/provisioning")?.[0]).toBe("./config/grafana/provisioning")
    expect(mountOf("grafana", "/etc/grafana/dashboards")?.[0]).toBe("./config/grafana/dashboards")
    expect(rawEnvOf("grafana")["GF_SECURITY_ADMIN_PASSWORD"]).toMatch(/^\$\{GRAFANA_ADMIN_PASSWORD:\?/)
    expect(rawEnvOf("grafana")["GF_USERS_ALLOW_SIGN_UP"]).toBe("false")
    const home = rawEnvOf("grafana")["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]!
    expect(existsSync(home.replace("/etc/grafana/dashboards/", "config/grafana/dashboards/")), home).toBe(
      true
    )
  })
})
