// Package auth issues and checks the platform's access tokens.
//
// The user service signs short-lived JWTs with Ed25519 (JWS alg "EdDSA") and
// publishes its public keys as a JWKS document; every other binary verifies
// tokens against that document. Asymmetric keys mean a verifier can never mint
// a token, and publishing the current and the previous key lets the signer
// rotate without logging anybody out.
//
// Verification is deliberately strict: the only accepted algorithm is EdDSA
// (so "none", HS* and RS* tokens fail before any key is consulted), a crit
// header is refused (no extension is understood), exp and iss are required,
// and the clock leeway is small. Keys come from the configured JWKS only:
// jku, x5u, x5c and jwk headers are never read. There is no aud: the key
// signs access tokens for the whole platform and nothing else; a second kind
// of token signed with it would need an aud or typ check here, or any
// service would take it as an access token. The key set is cached and
// refetched on an unknown kid at a bounded rate, so a stream of forged kids
// cannot turn the gateway into a load generator against the user service.
package auth
