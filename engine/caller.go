package engine

import (
	"context"
	"slices"
)

// Caller is the identity a request acts for, set by the edge that
// authenticated it (api) and read by the domain's policy checks. A context
// without a Caller is the system itself (background jobs, node-to-node
// work) and may do anything.
type Caller struct {
	UserID    string
	ProjectID string
	Roles     []string
	// IsAdmin is Glance's context.is_admin: it bypasses ownership checks.
	// Glance's unauthenticated ("noauth") context has IsAdmin set but no
	// project and no roles, so rules written as role:admin (publicize an
	// image, the tasks and cache APIs) still refuse it.
	IsAdmin bool
}

// HasRole reports whether the caller has the role.
func (c *Caller) HasRole(role string) bool { return c != nil && slices.Contains(c.Roles, role) }

// Admin reports whether the caller is an admin: Glance's is_admin, which
// its context middleware sets for the admin role.
func (c *Caller) Admin() bool { return c != nil && (c.IsAdmin || c.HasRole("admin")) }

// InProject reports whether the caller acts in project p (never for an
// empty p: a caller without a project owns nothing).
func (c *Caller) InProject(p string) bool { return c != nil && p != "" && c.ProjectID == p }

// NoAuthCaller is the identity of every request when authentication is off,
// as Glance's unauthenticated-context pipeline.
func NoAuthCaller() *Caller { return &Caller{IsAdmin: true} }

type callerKey struct{}

// WithCaller returns a context carrying c.
func WithCaller(ctx context.Context, c *Caller) context.Context {
	return context.WithValue(ctx, callerKey{}, c)
}

// CallerFrom returns the context's caller, or nil for the system.
func CallerFrom(ctx context.Context) *Caller {
	c, _ := ctx.Value(callerKey{}).(*Caller)
	return c
}
