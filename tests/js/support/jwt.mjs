// HS256 JSON Web Tokens with node:crypto, for tests that run the server with
// TIDINGS_JWT_SECRET and mint their own tokens.
import crypto from "node:crypto";

const b64url = (buf) => Buffer.from(buf).toString("base64url");

/** Signs claims (e.g. { sub, exp, roles }) with HS256. */
export function signJwt(claims, secret) {
  const head = b64url(JSON.stringify({ alg: "HS256", typ: "JWT" }));
  const body = b64url(JSON.stringify(claims));
  const sig = crypto.createHmac("sha256", secret).update(`${head}.${body}`).digest("base64url");
  return `${head}.${body}.${sig}`;
}

/** A token for `sub` that expires in `ttl` seconds (negative: already expired). */
export function token(secret, sub, ttl = 3600, extra = {}) {
  return signJwt({ sub, exp: Math.floor(Date.now() / 1000) + ttl, ...extra }, secret);
}

/** Verifies an HS256 token and its exp; returns the claims or throws. */
export function verifyJwt(jwt, secret) {
  const [head, body, sig] = String(jwt).split(".");
  const want = crypto.createHmac("sha256", secret).update(`${head}.${body}`).digest();
  const got = Buffer.from(sig || "", "base64url");
  if (got.length !== want.length || !crypto.timingSafeEqual(got, want)) throw new Error("bad signature");
  if (JSON.parse(Buffer.from(head, "base64url")).alg !== "HS256") throw new Error("bad alg");
  const claims = JSON.parse(Buffer.from(body, "base64url"));
  if (typeof claims.exp === "number" && claims.exp * 1000 <= Date.now()) throw new Error("expired");
  return claims;
}
