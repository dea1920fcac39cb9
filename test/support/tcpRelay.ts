/**
 * A TCP relay on 127.0.0.1 in front of a real server, for tests that need to control what a
 * client's connection does: `hold` stops what clients send from reaching the server (it goes
 * nowhere) and says when something was held back; `cut` ends every connection open now, as a
 * network failure would — the server sees the client gone, so an open transaction rolls back.
 */
import { connect, createServer, type Server, type Socket } from "node:net"

export interface TcpRelay {
  readonly port: number
  /** From now on, what clients send goes nowhere; resolves once something has been held back. */
  readonly hold: () => Promise<void>
  /** Ends every connection open now, and relays new ones again. */
  readonly cut: () => void
  readonly close: () => Promise<void>
}

/**
 * `databaseUrl` pointed at a relay on 127.0.0.1:`port`, over TCP: without the `host` parameter
 * that sends the embedded server's URLs through its Unix socket, past any relay.
 */
export const throughRelay = (databaseUrl: string, port: number): string => {
  const url = new URL(databaseUrl)
  url.hostname = "127.0.0.1"
  url.port = String(port)
  url.searchParams.delete("host")
  return url.toString()
}

/** Starts listening at once on `port` (0: any free port), relaying to `target`. */
export const startTcpRelay = (
  target: { readonly host: string; readonly port: number },
  port = 0
): Promise<TcpRelay> => {
  const pairs = new Set<readonly [Socket, Socket]>()
  let holding = false
  let onHeld: (() => void) | undefined
  const server: Server = createServer((client) => {
    const upstream = connect(target)
    const pair = [client, upstream] as const
    pairs.add(pair)
    const end = () => {
      pairs.delete(pair)
      client.destroy()
      upstream.destroy()
    }
    client.on("data", (chunk) => {
      if (!holding) return void upstream.write(chunk)
      onHeld?.()
      onHeld = undefined
    })
    upstream.on("data", (chunk) => void client.write(chunk))
    for (const socket of pair) {
      socket.on("error", end)
      socket.on("close", end)
    }
  })
  return new Promise((resolve, reject) => {
    server.once("error", reject)
    server.listen(port, "127.0.0.1", () => {
      const address = server.address()
      resolve({
        port: typeof address === "object" && address !== null ? address.port : port,
        hold: () =>
          new Promise<void>((held) => {
            holding = true
            onHeld = held
          }),
        cut: () => {
          for (const [client, upstream] of [...pairs]) {
            client.destroy()
            upstream.destroy()
          }
          pairs.clear()
          holding = false
          onHeld = undefined
        },
        close: () =>
          new Promise<void>((closed) => {
            for (const [client, upstream] of pairs) {
              client.destroy()
              upstream.destroy()
            }
            server.close(() => closed())
          })
      })
    })
  })
}
