// Package api is Mosaic's HTTP edge: the OpenStack Glance Image API v2 (and,
// as it grows, the key-manager API and node-to-node endpoints). Handlers
// decode the request, call the engine, encode the answer and translate
// errors once (statusFor). They hold no domain logic.
//
// The handler returned by New is safe for concurrent use.
package api
