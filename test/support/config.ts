/** The service's configuration as start-up reads and checks it, for tests of its keys. */
import { Effect, Layer } from "effect"
import { makeConfigProvider, readConfigFile, validate } from "../../src/config/AppConfig.ts"

/**
 * `config/config.yaml` under `env`, checked as at start-up (an Either). It listens on every address,
 * so it runs open (`AUTH_MODE=none`) unless `env` says otherwise.
 */
export const loadDefaults = (env: Record<string, string> = {}) =>
  validate.pipe(
    Effect.provide(
      Layer.setConfigProvider(
        makeConfigProvider(readConfigFile("config/config.yaml"), { AUTH_MODE: "none", ...env })
      )
    ),
    Effect.either
  )
