import { readFileSync } from "node:fs"
import { createServer } from "node:net"

const HOST = "127.0.0.1"

/**
 * The first port the kernel hands out to outgoing connections (Linux: `ip_local_port_range`;
 * elsewhere the IANA dynamic range).
 */
const ephemeralLow = (): number => {
  try {
    const low = Number(readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/)[0])
    return Number.isInteger(low) && low > 1024 ? low : 49152
  } catch {
    return 49152
  }
}

/** Whether nothing listens on `port` of 127.0.0.1 right now. */
export const isFree = (port: number): Promise<boolean> =>
  new Promise((resolve) => {
    const server = createServer()
    server.unref()
    server.once("error", () => resolve(false))
    server.listen(port, HOST, () => server.close(() => resolve(true)))
  })

/** A port the kernel picks for listening (`listen(0)`): free now, but from the ephemeral range. */
const kernelPort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = createServer()
    server.unref()
    server.on("error", reject)
    server.listen(0, HOST, () => {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      server.close(() => resolve(port))
    })
  })

/**
 * A TCP port on 127.0.0.1 that nothing listens on right now, for a server started a moment later.
 * It is picked at random below the ephemeral range: a port from that range (what `listen(0)`
 * gives) can meanwhile become the local end of any outgoing connection on the machine — a database
 * or broker client — and the server's `listen` then fails with EADDRINUSE.
 */
export const freePort = async (): Promise<number> => {
  const low = 10_000
  const high = ephemeralLow()
  if (high > low + 1_000) {
    for (let attempt = 0; attempt < 50; attempt++) {
      const port = low + Math.floor(Math.random() * (high - low))
      if (await isFree(port)) return port
    }
  }
  return kernelPort()
}

/** `count` different free ports, none of them in `avoid`. */
export const distinctFreePorts = async (count: number, avoid: ReadonlySet<number> = new Set()) => {
  const ports = new Set<number>()
  while (ports.size < count) {
    const port = await freePort()
    if (!avoid.has(port)) ports.add(port)
  }
  return [...ports]
}
