package engine

import (
	"context"
	"fmt"
	"slices"
	"strings"
)

// Action names an operation subject to policy, with Glance's policy names.
type Action string

// Glance policy actions (glance/policies/*.py), and Mosaic's own.
const (
	ActionAddImage         Action = "add_image"
	ActionGetImage         Action = "get_image"
	ActionGetImages        Action = "get_images"
	ActionModifyImage      Action = "modify_image"
	ActionPublicizeImage   Action = "publicize_image"
	ActionCommunitizeImage Action = "communitize_image"
	ActionDeleteImage      Action = "delete_image"
	ActionUploadImage      Action = "upload_image"
	ActionDownloadImage    Action = "download_image"
	ActionDeactivate       Action = "deactivate"
	ActionReactivate       Action = "reactivate"
	ActionAddMember        Action = "add_member"
	ActionGetMember        Action = "get_member"
	ActionGetMembers       Action = "get_members"
	ActionModifyMember     Action = "modify_member"
	ActionDeleteMember     Action = "delete_member"
	ActionCopyImage        Action = "copy_image"
	ActionSetLocation      Action = "set_image_location"
	ActionTasksAPI         Action = "tasks_api_access"
	ActionStoresDetail     Action = "stores_info_detail"
	ActionCacheList        Action = "cache_list"
	ActionCacheImage       Action = "cache_image"
	ActionCacheDelete      Action = "cache_delete"
	// ActionStoreUsage reads the whole store's usage (the "mosaic" part of
	// GET /v2/info/usage): every project's bytes and image count.
	ActionStoreUsage Action = "mosaic:store_usage"
)

// Scope is the project condition of a policy rule.
type Scope int

// Scopes. An admin (IsAdmin or role admin) satisfies every scope.
const (
	// AnyProject: no project condition.
	AnyProject Scope = iota
	// Visible: the caller can see the image (CanSee).
	Visible
	// OwnProject: the caller's project owns the image or secret.
	OwnProject
	// MemberProject: the caller's project is the membership's member.
	MemberProject
)

func (s Scope) String() string {
	switch s {
	case Visible:
		return "image visible to the caller"
	case OwnProject:
		return "caller's project owns it"
	case MemberProject:
		return "caller's project is the member"
	}
	return "any"
}

// Rule is one row of the policy table: who may perform an action.
type Rule struct {
	// Name is Glance's (or Barbican's) policy name.
	Name string
	// Roles: the caller needs one of them; none means any authenticated
	// caller. An admin context (Caller.Admin) passes without them.
	Roles []string
	// AdminRole: only callers with the admin role. The unauthenticated
	// context is an admin (Glance's is_admin) without the role, so it is
	// refused here, as Glance refuses it rules written as role:admin.
	AdminRole bool
	// AdminContext: only admins (the admin role or the unauthenticated
	// context).
	AdminContext bool
	Scope        Scope
	// Note is what the table in docs/auth.md says besides the columns.
	Note string
}

// Role sets. Keystone's default roles imply each other (admin → member →
// reader), but a token file lists roles as written, so each set names all
// the roles that grant it.
var (
	readRoles        = []string{"reader", "member", "admin"}
	writeRoles       = []string{"member", "admin"}
	secretReadRoles  = []string{"reader", "observer", "member", "creator", "admin"}
	secretWriteRoles = []string{"member", "creator", "admin"}
)

// policy is Mosaic's default policy: Glance Zed's rules as its legacy
// defaults apply them (owner-or-admin, admin-only publicize, tasks, cache
// and store details), with the role requirements of Glance's secure-RBAC
// defaults (a reader reads, only a member or an admin writes) — see
// docs/auth.md for why — and Barbican's rules for the key manager.
// Authorize and SecretPolicy decide from this table alone, and
// docs/auth.md shows it (PolicyTable renders it; a test keeps them equal).
var policy = []Rule{
	{Name: string(ActionGetImages), Roles: readRoles, Note: "lists only what the caller can see: own, public, shared-with-and-accepted (`member_status`), own community; others' community images only with `visibility=community`"},
	{Name: string(ActionGetImage), Roles: readRoles, Scope: Visible, Note: "an image the caller cannot see is 404, never 403"},
	{Name: string(ActionDownloadImage), Roles: readRoles, Scope: Visible, Note: "a deactivated image: admins only (403)"},
	{Name: string(ActionAddImage), Roles: writeRoles, Scope: OwnProject, Note: "`owner` other than the caller's project: admins only (403)"},
	{Name: string(ActionModifyImage), Roles: writeRoles, Scope: OwnProject, Note: "PATCH, tags, import; changing `owner`: admins only"},
	{Name: string(ActionCommunitizeImage), Roles: writeRoles, Scope: OwnProject, Note: "set `visibility` to community"},
	{Name: string(ActionPublicizeImage), AdminRole: true, Note: "set `visibility` to public (create or PATCH)"},
	{Name: string(ActionUploadImage), Roles: writeRoles, Scope: OwnProject, Note: "upload and stage"},
	{Name: string(ActionDeleteImage), Roles: writeRoles, Scope: OwnProject, Note: "a protected image cannot be deleted, by anyone (403)"},
	{Name: string(ActionDeactivate), Roles: writeRoles, Scope: OwnProject},
	{Name: string(ActionReactivate), Roles: writeRoles, Scope: OwnProject},
	{Name: string(ActionAddMember), Roles: writeRoles, Scope: OwnProject, Note: "shared images only (403 otherwise); new members are pending"},
	{Name: string(ActionDeleteMember), Roles: writeRoles, Scope: OwnProject},
	{Name: string(ActionGetMembers), Roles: readRoles, Scope: Visible, Note: "the owner sees every member, a member only itself"},
	{Name: string(ActionGetMember), Roles: readRoles, Scope: Visible, Note: "the owner, or the member itself (404 otherwise)"},
	{Name: string(ActionModifyMember), Roles: writeRoles, Scope: MemberProject, Note: "accept, reject or reset to pending; the owner may not (403)"},
	{Name: string(ActionSetLocation), Roles: writeRoles, Scope: OwnProject, Note: "location patches are refused anyway (Mosaic keeps no external locations)"},
	{Name: string(ActionCopyImage), AdminRole: true},
	{Name: string(ActionTasksAPI), AdminRole: true, Note: "the whole /v2/tasks API"},
	{Name: string(ActionStoresDetail), AdminRole: true},
	{Name: string(ActionCacheList), AdminRole: true},
	{Name: string(ActionCacheImage), AdminRole: true},
	{Name: string(ActionCacheDelete), AdminRole: true},
	{Name: string(ActionStoreUsage), AdminContext: true, Note: "the store-wide `mosaic` part of `/v2/info/usage`; others get Glance's `{\"usage\": {}}`"},
	{Name: string(SecretActionList), Roles: secretReadRoles, Note: "lists only the caller's project's secrets"},
	{Name: string(SecretActionGet), Roles: secretReadRoles, Scope: OwnProject, Note: "another project's secret is 404"},
	{Name: string(SecretActionDecrypt), Roles: secretReadRoles, Scope: OwnProject, Note: "payload; also how signature verification reads a certificate, with the uploader's rights"},
	{Name: string(SecretActionCreate), Roles: secretWriteRoles, Scope: OwnProject, Note: "always in the caller's project"},
	{Name: string(SecretActionDelete), Roles: secretWriteRoles, Scope: OwnProject},
}

var policyByName = func() map[string]*Rule {
	m := make(map[string]*Rule, len(policy))
	for i := range policy {
		m[policy[i].Name] = &policy[i]
	}
	return m
}()

// allows reports whether c passes the rule's role conditions.
func (r *Rule) allowsRole(c *Caller) bool {
	switch {
	case r.AdminRole:
		return c.HasRole("admin")
	case r.AdminContext:
		return c.Admin()
	case c.Admin() || len(r.Roles) == 0:
		return true
	}
	return slices.ContainsFunc(r.Roles, c.HasRole)
}

// Target is what a policy decision is about: an image (nil for actions not
// about one) and, for member actions, the membership in question.
type Target struct {
	Image  *Image
	Member *Member
	// CallerMember is the caller's own membership of Image, if any; it
	// decides whether a shared image is visible to the caller.
	CallerMember *Member
}

// Authorize is the one place where Mosaic decides whether the request's
// caller may perform act on target, from the policy table. Handlers never
// check identities themselves. A context without a Caller is the system
// and may do anything; an action missing from the table is refused.
//
// An image the caller cannot see is reported as not found (Glance's
// ImageAPIPolicy turns Forbidden into 404 there), with only the ID the
// caller gave, so a refusal never reveals another project's images.
func Authorize(ctx context.Context, act Action, t Target) error {
	c := CallerFrom(ctx)
	if c == nil {
		return nil
	}
	r, ok := policyByName[string(act)]
	if !ok {
		return notAuthorized(act)
	}
	img := t.Image
	// (An image being created is not stored yet: nothing to hide.)
	if img != nil && act != ActionAddImage && !CanSee(c, img, t.CallerMember) {
		return Errorf(ErrNotFound, "No image found with ID %s", img.ID)
	}
	if !r.allowsRole(c) {
		return notAuthorized(act)
	}
	if c.Admin() || img == nil {
		return nil
	}
	switch r.Scope {
	case OwnProject:
		if !c.InProject(img.Owner) {
			return notAuthorized(act)
		}
	case MemberProject:
		if t.Member == nil || !c.InProject(t.Member.MemberID) {
			return Errorf(ErrForbidden, "You are not permitted to modify 'status' on this image member.")
		}
	}
	if act == ActionDownloadImage && img.Status == StatusDeactivated {
		return Errorf(ErrForbidden, "The requested image has been deactivated. Image data download is prohibited.")
	}
	return nil
}

func notAuthorized(act Action) error {
	return Errorf(ErrForbidden, "You are not authorized to complete %s action.", act)
}

func isOwnerOrAdmin(c *Caller, img *Image) bool {
	return c.Admin() || c.InProject(img.Owner)
}

// CanSee reports whether caller c may see img: admins see everything;
// others see their own images, public and community ones, and shared
// images they are a member of (membership in any status, as Glance's
// show; lists narrow that with member_status).
func CanSee(c *Caller, img *Image, member *Member) bool {
	if c == nil || c.Admin() || c.InProject(img.Owner) {
		return true
	}
	switch img.Visibility {
	case VisibilityPublic, VisibilityCommunity:
		return true
	case VisibilityShared:
		return member != nil
	}
	return false
}

// DefaultSecretPolicy is the key manager's access rule, from the same
// policy table as images: secrets belong to a project; its readers,
// members and admins (and Barbican's observer and creator roles) read
// them; members, creators and admins store and delete them; an admin (the
// admin role, or the unauthenticated context) may do anything. Another
// project's secrets are invisible (not found), as its private images are.
func DefaultSecretPolicy(c *Caller, action SecretAction, s *Secret) error {
	if c == nil {
		return nil
	}
	r, ok := policyByName[string(action)]
	if !ok {
		return Errorf(ErrForbidden, "You are not authorized to perform %s.", action)
	}
	if s != nil && !c.Admin() && r.Scope == OwnProject && !c.InProject(s.ProjectID) {
		if action == SecretActionCreate {
			return Errorf(ErrForbidden, "A secret can only be stored in the caller's own project.")
		}
		return Errorf(ErrNotFound, "Not Found. Sorry but your secret is in another castle.")
	}
	if !r.allowsRole(c) {
		return Errorf(ErrForbidden, "You are not authorized to perform %s.", action)
	}
	return nil
}

// PolicyTable renders the policy table as Markdown, as docs/auth.md shows it.
func PolicyTable() string {
	var b strings.Builder
	b.WriteString("| action | roles | project | notes |\n|---|---|---|---|\n")
	for _, r := range policy {
		roles := "any authenticated caller"
		switch {
		case r.AdminRole:
			roles = "**admin role only**"
		case r.AdminContext:
			roles = "admin (role, or the unauthenticated mode)"
		case len(r.Roles) > 0:
			roles = strings.Join(r.Roles, ", ")
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", r.Name, roles, r.Scope, r.Note)
	}
	return b.String()
}
