import { createServer } from "node:net"

const HOST = "127.0.0.1"

/** A TCP port on 127.0.0.1 that nothing listens on right now. */
export const freePort = (): Promise<number> =>
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

/** `count` different free ports, none of them in `avoid`. */
export const distinctFreePorts = async (count: number, avoid: ReadonlySet<number> = new Set()) => {
  const ports = new Set<number>()
  while (ports.size < count) {
    const port = await freePort()
    if (!avoid.has(port)) ports.add(port)
  }
  return [...ports]
}

/** Whether nothing listens on `port` of 127.0.0.1 right now. */
export const isFree = (port: number): Promise<boolean> =>
  new Promise((resolve) => {
    const server = createServer()
    server.unref()
    server.once("error", () => resolve(false))
    server.listen(port, HOST, () => server.close(() => resolve(true)))
  })
