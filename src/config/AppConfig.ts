/**
 * Configuration: `config/config.yaml` (or the file named by `CONFIG_FILE`) under environment
 * variables. Every key `a.b_c` can be overridden by the variable `A_B_C` (so `database.url` is
 * `DATABASE_URL` and `kafka.brokers` is `KAFKA_BROKERS`). Each feature reads its own part with
 * `Config`; `AppConfig.validate` reads them all at start-up so a wrong value stops the service
 * before anything starts, naming the key.
 */
import { readFileSync } from "node:fs"
import { availableParallelism } from "node:os"
import path from "node:path"
import {
  Config,
  ConfigError,
  Data,
  ConfigProvider,
  ConfigProviderPathPatch as PathPatch,
  Duration,
  Effect,
  Either,
  HashSet,
  Layer,
  LogLevel,
  Option,
  Redacted
} from "effect"
import { parse as parseYaml } from "yaml"

// Validation goes on an unnamed value that is then nested under its name: that way an error's
// path ends with the key itself (`kafka.brokers`), not just its parent.
const positiveInt = (name: string) =>
  Config.integer().pipe(
    Config.validate({ message: "expected a whole number ≥ 1", validation: (n) => n >= 1 }),
    Config.nested(name)
  )
const nonNegativeInt = (name: string) =>
  Config.integer().pipe(
    Config.validate({ message: "expected a whole number ≥ 0", validation: (n) => n >= 0 }),
    Config.nested(name)
  )
const port = (name: string) =>
  Config.integer().pipe(
    Config.validate({
      message: "expected a port number from 0 to 65535",
      validation: (n) => n >= 0 && n <= 65535
    }),
    Config.nested(name)
  )
const positiveDuration = (name: string) =>
  Config.duration().pipe(
    Config.validate({
      message: "expected a positive duration such as 500 millis or 10 seconds",
      validation: (d) => Duration.greaterThan(d, Duration.zero)
    }),
    Config.nested(name)
  )

/** `host:port[,host:port…]`: the brokers in `kafka.brokers`, and wherever else a list is given. */
const BROKER = /^[A-Za-z0-9.-]+:\d{1,5}$/
export const BROKER_LIST_EXPECTED =
  "expected a comma-separated list of host:port, such as kafka1:9092,kafka2:9092"
export const splitBrokerList = (s: string): ReadonlyArray<string> =>
  s
    .split(",")
    .map((b) => b.trim())
    .filter((b) => b !== "")
export const isBrokerList = (list: ReadonlyArray<string>): boolean =>
  list.length > 0 && list.every((b) => BROKER.test(b))

const brokerList = (name: string) =>
  Config.string().pipe(
    Config.map(splitBrokerList),
    Config.validate({ message: BROKER_LIST_EXPECTED, validation: isBrokerList }),
    Config.nested(name)
  )

/**
 * The cores this process may use: `os.availableParallelism()` (the CPUs it may run on), lowered to
 * a cgroup's CPU quota rounded up (a container's `--cpus`, a Kubernetes CPU limit), which Node
 * does not read: a pod limited to 2 CPUs on a 32-core node has 2.
 */
export const availableCores = (): number => {
  const cores = availableParallelism()
  const quota = (text: () => string, toCores: (fields: Array<string>) => number) => {
    try {
      const n = toCores(text().trim().split(/\s+/))
      return Number.isFinite(n) && n > 0 ? Math.ceil(n) : cores
    } catch {
      return cores
    }
  }
  // cgroup v2: "max 100000" (no quota) or "200000 100000"; v1: the quota (-1: none) and its period.
  const v2 = quota(
    () => readFileSync("/sys/fs/cgroup/cpu.max", "utf8"),
    ([max, period]) => (max === "max" ? Number.NaN : Number(max) / Number(period))
  )
  const v1 = quota(
    () =>
      `${readFileSync("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "utf8")} ${readFileSync("/sys/fs/cgroup/cpu/cpu.cfs_period_us", "utf8")}`,
    ([max, period]) => Number(max) / Number(period)
  )
  return Math.max(1, Math.min(cores, v2, v1))
}

/** `auto` (one per core, `availableCores`) or a whole number ≥ 1. */
const workerCount = (name: string) =>
  Config.string().pipe(
    Config.mapOrFail((s) => {
      const text = s.trim().toLowerCase()
      const n = text === "auto" ? availableCores() : Number(text)
      return Number.isInteger(n) && n >= 1
        ? Either.right(n)
        : Either.left(ConfigError.InvalidData([], "expected auto (one per core) or a whole number ≥ 1"))
    }),
    Config.nested(name)
  )

export const HttpConfig = Config.all({
  host: Config.string("host").pipe(Config.withDefault("0.0.0.0")),
  port: port("port").pipe(Config.withDefault(8081)),
  /** How long in-flight requests may take to finish on shutdown. */
  shutdownTimeout: positiveDuration("shutdown_timeout").pipe(Config.withDefault(Duration.seconds(10))),
  /** One structured log line per request. */
  accessLog: Config.boolean("access_log").pipe(Config.withDefault(true)),
  /**
   * `GET /order/{uid}` and `GET /orders/search` answered below the router, the only routes that
   * are: the same answers, for a fraction of the CPU. Off only to measure the difference and to
   * test both ways alike.
   */
  fastPaths: Config.boolean("fast_paths").pipe(Config.withDefault(true)),
  /** How long a client may take to send a request's headers; then its connection is closed (408). */
  headersTimeout: positiveDuration("headers_timeout").pipe(Config.withDefault(Duration.seconds(10))),
  /** How long a client may take to send a whole request, body included (408). */
  requestTimeout: positiveDuration("request_timeout").pipe(Config.withDefault(Duration.seconds(30))),
  /** How long an idle keep-alive connection is kept. */
  keepAliveTimeout: positiveDuration("keep_alive_timeout").pipe(Config.withDefault(Duration.seconds(5))),
  /** Open connections at most; past it a new connection is closed as it arrives. */
  maxConnections: positiveInt("max_connections").pipe(Config.withDefault(4096)),
  /** The largest request body taken (a replay's selection is a few hundred bytes); larger is 413, unread. */
  maxBodyBytes: positiveInt("max_body_bytes").pipe(Config.withDefault(64 * 1024)),
  /**
   * Processes serving on the one port, each a full member of the consumer group (src/cluster/):
   * `auto` is one per core; 1 is a single process, with no primary.
   */
  workers: workerCount("workers").pipe(Config.withDefault(availableCores()))
}).pipe(Config.nested("http"))

export const DatabaseConfig = Config.all({
  /** Unset: the service starts the embedded PostgreSQL (see src/App.ts). */
  url: Config.option(Config.redacted("url")),
  poolMax: positiveInt("pool_max").pipe(Config.withDefault(10)),
  connectTimeout: positiveDuration("connect_timeout").pipe(Config.withDefault(Duration.seconds(5))),
  /**
   * Every statement read for an HTTP client is cancelled by PostgreSQL past this (503
   * `unavailable`); ingestion's and the rest's statements keep the server's own setting.
   */
  clientStatementTimeout: positiveDuration("client_statement_timeout").pipe(
    Config.withDefault(Duration.seconds(5))
  ),
  /** Reads for HTTP clients waiting for a connection at most; past it one is refused at once (503). */
  clientReadQueue: positiveInt("client_read_queue").pipe(Config.withDefault(1_000)),
  embeddedDataDir: Config.option(Config.string("embedded_data_dir")),
  embeddedPort: Config.option(port("embedded_port"))
}).pipe(Config.nested("database"))

/** `database.url`, where it must be set: the pool connects to nothing else. */
export const DatabaseUrl = Config.redacted("url").pipe(Config.nested("database"))

export const KafkaConfig = Config.all({
  /** Unset: the service starts a local Kafka broker (see src/App.ts). */
  brokers: Config.option(brokerList("brokers")),
  clientId: Config.string("client_id").pipe(Config.withDefault("order-service")),
  groupId: Config.string("group_id").pipe(Config.withDefault("order-service")),
  topic: Config.string("topic").pipe(Config.withDefault("orders")),
  dlqTopic: Config.string("dlq_topic").pipe(Config.withDefault("orders.dlq")),
  partitions: positiveInt("partitions").pipe(Config.withDefault(3)),
  replicationFactor: positiveInt("replication_factor").pipe(Config.withDefault(1)),
  /** How often the group's lag on the orders topic is measured for `/metrics` (src/observability/ConsumerLag.ts). */
  lagInterval: positiveDuration("lag_interval").pipe(Config.withDefault(Duration.seconds(10))),
  localDataDir: Config.option(Config.string("local_data_dir"))
}).pipe(Config.nested("kafka"))

/** `kafka.brokers`, where they must be set: the client connects to nothing else. */
export const KafkaBrokers = brokerList("brokers").pipe(Config.nested("kafka"))

export const IngestConfig = Config.all({
  /** A message larger than this goes to the dead-letter topic as `too_large`. */
  maxMessageBytes: positiveInt("max_message_bytes").pipe(Config.withDefault(1024 * 1024)),
  /** First and longest pause between retries of a failing batch. */
  retryBase: positiveDuration("retry_base").pipe(Config.withDefault(Duration.millis(200))),
  retryMax: positiveDuration("retry_max").pipe(Config.withDefault(Duration.seconds(10))),
  /** kafkajs consumers in the group per process: one fetches while the others' batches are stored. */
  consumers: positiveInt("consumers").pipe(Config.withDefault(3)),
  /** `batch`: one transaction per Kafka batch; `message`: one per order (slower; kept for comparison). */
  transaction: Config.literal("batch", "message")("transaction").pipe(Config.withDefault("batch" as const))
}).pipe(Config.nested("ingest"))

export const CacheConfig = Config.all({
  maxEntries: nonNegativeInt("max_entries").pipe(Config.withDefault(100_000)),
  maxBytes: nonNegativeInt("max_bytes").pipe(Config.withDefault(256 * 1024 * 1024)),
  ttl: positiveDuration("ttl").pipe(Config.withDefault(Duration.minutes(10))),
  warmCount: nonNegativeInt("warm_count").pipe(Config.withDefault(10_000))
}).pipe(Config.nested("cache"))

export const LiveConfig = Config.all({
  heartbeat: positiveDuration("heartbeat").pipe(Config.withDefault(Duration.seconds(15))),
  clientBuffer: positiveInt("client_buffer").pipe(Config.withDefault(4096)),
  resumeWindow: positiveInt("resume_window").pipe(Config.withDefault(5_000)),
  /** Clients at most; past it a new one is answered 503 (`live_clients`). */
  maxClients: positiveInt("max_clients").pipe(Config.withDefault(2_000)),
  /** Clients at most from one remote address; past it 503 (`live_clients_per_address`). */
  maxClientsPerAddress: positiveInt("max_clients_per_address").pipe(Config.withDefault(50)),
  /** Bytes a client may have waiting, a resumed backlog included; past it `dropped` (a resume: `gap`). */
  clientBufferBytes: positiveInt("client_buffer_bytes").pipe(Config.withDefault(256 * 1024)),
  /** How long a client's connection may take nothing while bytes wait for it; then `dropped`. */
  drainTimeout: positiveDuration("drain_timeout").pipe(Config.withDefault(Duration.seconds(30)))
}).pipe(Config.nested("live"))

/** A replay token shorter than this is refused at start-up: it would be guessable. */
export const MIN_REPLAY_TOKEN_LENGTH = 16

export const DeadLettersConfig = Config.all({
  /**
   * Bearer token `POST /dead-letters/replay` requires; unset, replay over HTTP is off. A secret:
   * never logged, best given in the environment (`DEAD_LETTERS_REPLAY_TOKEN`).
   */
  replayToken: Config.option(
    Config.redacted().pipe(
      Config.validate({
        message: `expected a token of at least ${MIN_REPLAY_TOKEN_LENGTH} characters`,
        validation: (token) => Redacted.value(token).trim().length >= MIN_REPLAY_TOKEN_LENGTH
      }),
      Config.nested("replay_token")
    )
  ),
  /**
   * How long a letter stays in the service's index (`dead_letters`) after it was parked: older
   * rows are deleted. The dead-letter topic's own retention (`retention.ms`) is separate.
   */
  retention: positiveDuration("retention").pipe(Config.withDefault(Duration.days(30))),
  /** How often letters past `retention` are removed from the index (and once at start). */
  retentionCheck: positiveDuration("retention_check").pipe(Config.withDefault(Duration.hours(1))),
  /**
   * Most bytes of letters (value, key and headers) one replay call holds and sends: the page ends
   * before the letter that would go past it (always at least one), `next_cursor` leads on.
   */
  replayPageBytes: positiveInt("replay_page_bytes").pipe(Config.withDefault(8 * 1024 * 1024))
}).pipe(Config.nested("dead_letters"))

/** The roles the service knows: `operator` includes `agent`; `metrics` may only scrape `/metrics`. */
export const ROLES = ["agent", "operator", "metrics"] as const
export type Role = (typeof ROLES)[number]
const isRole = (s: string): s is Role => (ROLES as ReadonlyArray<string>).includes(s)

/** One configured API key: who it is, its role, and the SHA-256 (hex) of the key itself. */
export interface ApiKey {
  readonly name: string
  readonly role: Role
  readonly sha256: string
}

const API_KEY = /^([\w.@-]{1,64}):([a-z]+):([0-9a-f]{64})$/
export const API_KEYS_EXPECTED =
  'expected a comma-separated list of name:role:sha256, where role is agent, operator or metrics and sha256 is the key\'s SHA-256 in lower-case hex (`printf %s "$KEY" | sha256sum`)'

/** `name:role:sha256,…` (empty: no keys). */
export const parseApiKeys = (s: string): ReadonlyArray<ApiKey> | undefined => {
  const keys: Array<ApiKey> = []
  for (const item of s.split(",").map((i) => i.trim())) {
    if (item === "") continue
    const m = API_KEY.exec(item)
    if (m === null || !isRole(m[2]!)) return undefined
    keys.push({ name: m[1]!, role: m[2], sha256: m[3]! })
  }
  return keys
}

/** `provider:service,…`: names the provider gives roles, mapped to the service's. */
export const parseRoleMap = (s: string): ReadonlyMap<string, Role> | undefined => {
  const map = new Map<string, Role>()
  for (const item of s.split(",").map((i) => i.trim())) {
    if (item === "") continue
    const at = item.lastIndexOf(":")
    const role = item.slice(at + 1)
    if (at < 1 || !isRole(role)) return undefined
    map.set(item.slice(0, at), role)
  }
  return map
}

const JWS_ALGORITHMS = [
  "RS256",
  "RS384",
  "RS512",
  "PS256",
  "PS384",
  "PS512",
  "ES256",
  "ES384",
  "ES512",
  "EdDSA"
]

/**
 * A list given as one string (`a,b c`), as an environment variable gives it, or as a YAML list;
 * `check` turns it into its value or says what was expected. Nested last, so that an error names
 * the key itself.
 */
const listOf = <A>(name: string, check: (s: string) => Either.Either<A, string>) =>
  Config.string().pipe(
    Config.orElse(() => Config.array(Config.string()).pipe(Config.map((items) => items.join(",")))),
    Config.mapOrFail((s) => Either.mapLeft(check(s), (message) => ConfigError.InvalidData([], message))),
    Config.nested(name)
  )

export const AuthConfig = Config.all({
  /**
   * `required`: every route but the public ones needs a signed-in person or a program's credential.
   * `none`: no sign-in, everything open (for one machine: see `validateAuth`).
   */
  mode: Config.literal("required", "none")("mode").pipe(Config.withDefault("required" as const)),
  /** `GET /order/{order_uid}` by exact id for anyone (the original contract). */
  publicOrderLookup: Config.boolean("public_order_lookup").pipe(Config.withDefault(true)),
  /** The URL people reach the service at; the sign-in callback is under it. Unset: the request's Host. */
  publicUrl: Config.option(
    Config.url("public_url").pipe(
      Config.validate({
        message: "expected an http or https URL such as https://orders.example.com",
        validation: (u) => u.protocol === "https:" || u.protocol === "http:"
      })
    )
  ),
  apiKeys: listOf("api_keys", (s) => Either.fromNullable(parseApiKeys(s), () => API_KEYS_EXPECTED)).pipe(
    Config.withDefault([] as ReadonlyArray<ApiKey>)
  ),
  oidc: Config.all({
    issuer: Config.option(Config.url("issuer")),
    clientId: Config.string("client_id").pipe(Config.withDefault("order-service")),
    clientSecret: Config.option(Config.redacted("client_secret")),
    scopes: Config.string("scopes").pipe(Config.withDefault("openid profile email")),
    /** The `aud` a bearer access token must name. */
    audience: Config.string("audience").pipe(Config.withDefault("order-service")),
    /** Where the roles are in the claims, as a dotted path (Keycloak: `realm_access.roles`). */
    rolesClaim: Config.string("roles_claim").pipe(Config.withDefault("roles")),
    roleMap: listOf("role_map", (s) =>
      Either.fromNullable(
        parseRoleMap(s),
        () => "expected a comma-separated list of provider-role:role, role one of agent, operator, metrics"
      )
    ).pipe(Config.withDefault(new Map<string, Role>() as ReadonlyMap<string, Role>)),
    algorithms: listOf("algorithms", (s) => {
      const list = s.split(/[\s,]+/).filter((a) => a !== "")
      return list.length > 0 && list.every((a) => JWS_ALGORITHMS.includes(a))
        ? Either.right(list)
        : Either.left(`expected asymmetric JWS algorithms among ${JWS_ALGORITHMS.join(", ")}`)
    }).pipe(Config.withDefault(["RS256", "PS256", "ES256", "EdDSA"]))
  }).pipe(Config.nested("oidc")),
  session: Config.all({
    /** How long a sign-in lasts, however active. */
    ttl: positiveDuration("ttl").pipe(Config.withDefault(Duration.hours(8))),
    cookie: Config.string("cookie").pipe(
      Config.validate({
        message: "expected a cookie name of letters, digits, _ and -",
        validation: (s) => /^[\w-]{1,64}$/.test(s)
      }),
      Config.withDefault("order_session")
    ),
    /** How long an instance trusts what it read of a session: a sign-out elsewhere takes this long to reach it. */
    recheck: positiveDuration("recheck").pipe(Config.withDefault(Duration.seconds(5)))
  }).pipe(Config.nested("session"))
}).pipe(Config.nested("auth"))

export type AuthSettings = Config.Config.Success<typeof AuthConfig>

/** Hosts that only this machine reaches. */
export const isLoopbackHost = (host: string): boolean =>
  host === "localhost" || host === "::1" || host === "[::1]" || /^127(\.\d{1,3}){3}$/.test(host)

/**
 * What the keys allow together, beyond each key's own check: `auth.mode: required` needs a way to
 * sign in or a key on a network address, or nothing but the public lookup could ever be used.
 */
export const checkAuth = (host: string, auth: AuthSettings): string | undefined => {
  if (auth.mode === "none") return undefined
  if (Option.isSome(auth.oidc.issuer) && Option.isNone(auth.oidc.clientSecret))
    return "auth.oidc.client_secret (env AUTH_OIDC_CLIENT_SECRET): required with auth.oidc.issuer, for the sign-in"
  if (Option.isNone(auth.oidc.issuer) && auth.apiKeys.length === 0 && !isLoopbackHost(host))
    return (
      `auth.mode (env AUTH_MODE): required, but neither auth.oidc.issuer nor auth.api_keys is set, so nobody could sign in ` +
      `to what ${host} would serve. Configure a provider or keys, or set auth.mode: none to serve without sign-in (open to anyone who reaches ${host})`
    )
  return undefined
}

const LOG_LEVELS: Record<string, LogLevel.LogLevel> = {
  all: LogLevel.All,
  trace: LogLevel.Trace,
  debug: LogLevel.Debug,
  info: LogLevel.Info,
  warn: LogLevel.Warning,
  warning: LogLevel.Warning,
  error: LogLevel.Error,
  fatal: LogLevel.Fatal,
  none: LogLevel.None,
  off: LogLevel.None
}
const logLevelConfig = (name: string) =>
  Config.string().pipe(
    Config.mapOrFail((s) => {
      const level = LOG_LEVELS[s.trim().toLowerCase()]
      return level === undefined
        ? Either.left(
            ConfigError.InvalidData(
              [],
              `expected one of trace, debug, info, warning, error, fatal, none; got ${JSON.stringify(s)}`
            )
          )
        : Either.right(level)
    }),
    Config.nested(name)
  )

export const LogConfig = Config.all({
  level: logLevelConfig("level").pipe(Config.withDefault(LogLevel.Info)),
  format: Config.literal("json", "pretty", "auto")("format").pipe(Config.withDefault("auto" as const))
}).pipe(Config.nested("log"))

/** Every part, read once at start-up so that a bad value fails before anything starts. */
export const AllConfig = Config.all({
  http: HttpConfig,
  database: DatabaseConfig,
  kafka: KafkaConfig,
  ingest: IngestConfig,
  cache: CacheConfig,
  deadLetters: DeadLettersConfig,
  live: LiveConfig,
  auth: AuthConfig,
  log: LogConfig
})

export const DEFAULT_CONFIG_FILE = "config/config.yaml"

/** The configuration cannot be used: the file is unreadable or not YAML, or a key is wrong. */
export class ConfigFileError extends Data.TaggedError("ConfigFileError")<{ readonly message: string }> {}

/** Parse a YAML config file into a plain object; a file that is not a mapping is an error. */
export const readConfigFile = (file: string): unknown => {
  let text: string
  try {
    text = readFileSync(file, "utf8")
  } catch (e) {
    throw new ConfigFileError({ message: `Cannot read the config file ${file}: ${(e as Error).message}` })
  }
  let value: unknown
  try {
    value = parseYaml(text)
  } catch (e) {
    throw new ConfigFileError({
      message: `The config file ${file} is not valid YAML: ${(e as Error).message}`
    })
  }
  if (value == null) return {}
  if (typeof value !== "object" || Array.isArray(value)) {
    throw new ConfigFileError({ message: `The config file ${file} must hold a mapping of keys` })
  }
  return value
}

/** Environment first, then the file. */
export const makeConfigProvider = (
  fileValues: unknown,
  env: NodeJS.ProcessEnv = process.env
): ConfigProvider.ConfigProvider =>
  ConfigProvider.fromMap(
    new Map(Object.entries(env).filter((e): e is [string, string] => e[1] !== undefined && e[1] !== "")),
    { pathDelim: "_" }
  ).pipe(
    ConfigProvider.constantCase,
    ConfigProvider.orElse(() => ConfigProvider.fromJson(fileValues))
  )

export const configFilePath = (env: NodeJS.ProcessEnv = process.env): string =>
  path.resolve(env["CONFIG_FILE"] && env["CONFIG_FILE"] !== "" ? env["CONFIG_FILE"] : DEFAULT_CONFIG_FILE)

/** The provider for the running service: `CONFIG_FILE` (default `config/config.yaml`) under the environment. */
export const layerFromFileAndEnv = (env: NodeJS.ProcessEnv = process.env) =>
  Layer.setConfigProvider(makeConfigProvider(readConfigFile(configFilePath(env)), env))

/** The environment variable that overrides a config key. */
export const envNameOf = (pathSegments: ReadonlyArray<string>): string =>
  pathSegments.map((s) => s.replace(/([a-z0-9])([A-Z])/g, "$1_$2").toUpperCase()).join("_")

const describeConfigError = (error: ConfigError.ConfigError): ReadonlyArray<string> =>
  ConfigError.reduceWithContext(error, undefined, {
    andCase: (_, l: ReadonlyArray<string>, r: ReadonlyArray<string>) => [...l, ...r],
    orCase: (_, l: ReadonlyArray<string>, r: ReadonlyArray<string>) => [...l, ...r],
    invalidDataCase: (_, p, message) => [`${p.join(".")} (env ${envNameOf(p)}): ${message}`],
    missingDataCase: (_, p, message) => [`${p.join(".")} (env ${envNameOf(p)}): ${message}`],
    sourceUnavailableCase: (_, p, message) => [`${p.join(".")}: ${message}`],
    unsupportedCase: (_, p, message) => [`${p.join(".")}: ${message}`]
  })

/** One line per wrong key, without repeats. */
export const formatConfigError = (error: ConfigError.ConfigError): string =>
  [...new Set(describeConfigError(error))].join("\n")

/** Read and check every key; fail with a message naming each wrong key. */
export const validate = Effect.gen(function* () {
  const result = yield* Effect.either(AllConfig)
  if (Either.isLeft(result)) {
    return yield* Effect.fail(
      new ConfigFileError({ message: `Invalid configuration:\n${formatConfigError(result.left)}` })
    )
  }
  const authProblem = checkAuth(result.right.http.host, result.right.auth)
  if (authProblem !== undefined)
    return yield* Effect.fail(new ConfigFileError({ message: `Invalid configuration:\n${authProblem}` }))
  return result.right
})

export type AppConfigValues = Effect.Effect.Success<typeof validate>

/** A summary safe to log: secrets stay hidden. */
export const describeForLog = (c: AppConfigValues) => ({
  http: { host: c.http.host, port: c.http.port, workers: c.http.workers },
  database: {
    url: Option.match(c.database.url, {
      onNone: () => "(embedded)",
      onSome: (u) => redactUrl(Redacted.value(u))
    })
  },
  kafka: { brokers: Option.getOrElse(c.kafka.brokers, () => ["(local)"]).join(","), topic: c.kafka.topic },
  cache: { maxEntries: c.cache.maxEntries, warmCount: c.cache.warmCount },
  deadLetters: { replay: Option.isSome(c.deadLetters.replayToken) ? "on (token set)" : "off" },
  auth: {
    mode: c.auth.mode,
    issuer: Option.match(c.auth.oidc.issuer, { onNone: () => null, onSome: (u) => u.href }),
    api_keys: c.auth.apiKeys.map((k) => `${k.name} (${k.role})`)
  }
})

const redactUrl = (u: string): string => {
  try {
    const url = new URL(u)
    if (url.password !== "") url.password = "***"
    return url.toString()
  } catch {
    return "***"
  }
}

/** Every key the service reads (`http.port`, …), found by reading the config from a provider that records paths. */
export const configKeys: Effect.Effect<ReadonlyArray<string>> = Effect.suspend(() => {
  const seen = new Set<string>()
  const recorder = ConfigProvider.fromFlat(
    ConfigProvider.makeFlat({
      load: (path) => {
        seen.add(path.join("."))
        return Effect.fail(ConfigError.MissingData([...path], "recording"))
      },
      enumerateChildren: () => Effect.succeed(HashSet.empty()),
      patch: PathPatch.empty
    })
  )
  return Effect.withConfigProvider(Effect.either(AllConfig), recorder).pipe(
    Effect.map(() => [...seen].sort())
  )
})
