// Package auth authenticates API requests and turns them into an
// engine.Caller. Three modes, chosen by the operator (mosaic serve --auth):
//
//   - none: every request acts as Glance's unauthenticated context
//     (engine.NoAuthCaller). Meant for loopback only; cmd/mosaic refuses
//     to listen elsewhere in this mode unless forced.
//   - token: a static file maps tokens to a user, a project and roles.
//   - keystone: X-Auth-Token is validated with Keystone v3
//     (GET /v3/auth/tokens), with a service token or by self-validation;
//     results are cached, never longer than the token lives.
//
// A failed authentication is ErrUnauthenticated; the api package answers
// 401 with a WWW-Authenticate header naming Keystone (Challenge).
// Authenticators are safe for concurrent use.
package auth
