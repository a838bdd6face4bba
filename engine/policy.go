package engine

import "context"

// Action names an operation subject to policy, with Glance's policy names.
type Action string

// Glance policy actions (glance/policies/*.py).
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
)

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
// caller may perform act on target. Handlers never check identities
// themselves. A context without a Caller is the system and may do anything.
//
// The rules are Glance Zed's effective defaults (legacy mode, see
// glance/API.md §1.2): a few actions need role:admin; image-changing
// actions need the owner or an admin; an image the caller cannot see is
// reported as not found, as Glance does.
func Authorize(ctx context.Context, act Action, t Target) error {
	c := CallerFrom(ctx)
	if c == nil {
		return nil
	}
	switch act {
	case ActionPublicizeImage, ActionCopyImage, ActionTasksAPI, ActionStoresDetail,
		ActionCacheList, ActionCacheImage, ActionCacheDelete:
		if !c.HasRole("admin") {
			return notAuthorized(act)
		}
		return nil
	}
	img := t.Image
	if img == nil {
		return nil
	}
	if !CanSee(c, img, t.CallerMember) {
		return Errorf(ErrNotFound, "No image found with ID %s", img.ID)
	}
	switch act {
	case ActionGetImage, ActionGetImages, ActionGetMember, ActionGetMembers:
		return nil
	case ActionDownloadImage:
		if img.Status == StatusDeactivated && !c.IsAdmin {
			return Errorf(ErrForbidden, "The requested image has been deactivated. Image data download is prohibited.")
		}
		return nil
	case ActionModifyMember:
		// Only the member itself (or an admin) answers an invitation.
		if c.IsAdmin || (t.Member != nil && c.ProjectID != "" && c.ProjectID == t.Member.MemberID) {
			return nil
		}
		return Errorf(ErrForbidden, "You are not permitted to modify 'status' on this image member.")
	}
	if isOwnerOrAdmin(c, img) {
		return nil
	}
	return notAuthorized(act)
}

func notAuthorized(act Action) error {
	return Errorf(ErrForbidden, "You are not authorized to complete %s action.", act)
}

func isOwnerOrAdmin(c *Caller, img *Image) bool {
	return c.IsAdmin || (c.ProjectID != "" && c.ProjectID == img.Owner)
}

// CanSee reports whether caller c may see img: admins see everything;
// others see their own images, public and community ones, and shared
// images they are a member of (membership in any status, as Glance's
// show; lists narrow that with member_status).
func CanSee(c *Caller, img *Image, member *Member) bool {
	if c == nil || c.IsAdmin {
		return true
	}
	if c.ProjectID != "" && c.ProjectID == img.Owner {
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
