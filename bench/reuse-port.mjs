/**
 * For measurement only (`npm run bench -- workers`), preloaded with `--import`: every server the
 * process listens with takes `reusePort` (Node 22.12 / 23.1 and later, Linux), so that each cluster
 * worker binds a socket of its own and the kernel spreads new connections between them, instead of
 * the primary accepting them and handing them round. The service itself listens without it
 * (src/cluster/Primary.ts says why).
 */
import net from "node:net"

const listen = net.Server.prototype.listen
net.Server.prototype.listen = function (...args) {
  // listen(port, host, callback), as the service calls it, or listen(options, callback).
  if (typeof args[0] === "number") {
    const callback = args.find((a) => typeof a === "function")
    const host = typeof args[1] === "string" ? args[1] : undefined
    return listen.call(this, { port: args[0], host, reusePort: true }, callback)
  }
  if (typeof args[0] === "object" && args[0] !== null && !("fd" in args[0]) && !("path" in args[0]))
    return listen.call(this, { ...args[0], reusePort: true }, ...args.slice(1))
  return listen.apply(this, args)
}
