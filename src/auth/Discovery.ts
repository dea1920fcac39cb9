/**
 * An OpenID provider's metadata, as the service (`Auth`) and `npm run dlq` read it. Plain `http`
 * issuers are allowed — the local provider and compose's Keycloak are reached that way — and
 * anything else is `openid-client`'s own rules.
 */
import * as client from "openid-client"

export const discover = (
  issuer: URL,
  clientId: string,
  clientSecret: string
): Promise<client.Configuration> =>
  client.discovery(
    issuer,
    clientId,
    clientSecret,
    undefined,
    issuer.protocol === "http:" ? { execute: [client.allowInsecureRequests] } : undefined
  )
