import { Effect } from "effect"
import { chromium, type Browser, type LaunchOptions } from "playwright-core"

// Debian's Chromium, never a downloaded build: tests must run offline on the CI image.
export const chromiumPath = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium"

// Keep the browser from talking to anything but the server under test.
export const chromiumArgs: ReadonlyArray<string> = [
  "--no-sandbox",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run"
]

export const launchBrowser = (options: LaunchOptions = {}): Promise<Browser> =>
  chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    ...options,
    args: [...chromiumArgs, ...(options.args ?? [])]
  })

/** A browser closed when the enclosing scope closes, e.g. shared by a test file through `it.layer`. */
export const scopedBrowser = (options: LaunchOptions = {}) =>
  Effect.acquireRelease(
    Effect.tryPromise({
      try: () => launchBrowser(options),
      catch: (cause) => new Error(`cannot launch Chromium at ${chromiumPath}`, { cause })
    }).pipe(Effect.orDie),
    (browser) => Effect.promise(() => browser.close())
  )

/**
 * A request the browser cancels as a page is left, not a failure: the order page's live feed
 * (`GET /orders/live`) is open for as long as the page is, so leaving the page cancels it.
 */
export const isStreamLeftBehind = (request: { url(): string; failure(): { errorText: string } | null }) =>
  new URL(request.url()).pathname === "/orders/live" && request.failure()?.errorText === "net::ERR_ABORTED"
