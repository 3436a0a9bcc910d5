// The OAuth 2.0 server of tests/oidc.rs with tokens that live only a few seconds, to watch a
// client refresh them: oauth2-mock-server's own library, its tokens' `exp` and `expires_in`
// shortened through its documented hooks. Prints `listening <port>` once, then one line
// `issued <unix ms> expires <unix ms>` per token, as it issues them.
//
// Usage: node short-lived.mjs <cert.pem> <key.pem> <lifetime seconds>
import { OAuth2Server } from "oauth2-mock-server";

const [cert, key, lifetime] = process.argv.slice(2);
const seconds = Number(lifetime);
const server = new OAuth2Server(key, cert);
await server.issuer.keys.generate("RS256");
server.service.on("beforeTokenSigning", (token) => {
  token.payload.exp = token.payload.iat + seconds;
  console.log(`issued ${token.payload.iat * 1000} expires ${token.payload.exp * 1000}`);
});
server.service.on("beforeResponse", (response) => {
  if (response.body && typeof response.body === "object") response.body.expires_in = seconds;
});
await server.start(0, "127.0.0.1");
console.log(`listening ${server.address().port}`);
