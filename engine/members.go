package engine

import (
	"context"
	"errors"
	"slices"
	"time"
)

// Member statuses.
const (
	MemberPending  = "pending"
	MemberAccepted = "accepted"
	MemberRejected = "rejected"
)

// Member is an image membership: a project an image is shared with.
type Member struct {
	ImageID   string    `json:"image_id"`
	MemberID  string    `json:"member_id"`
	Status    string    `json:"status"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// MemberStore holds image memberships. Implementations replicate them
// (raftmeta.Node) and are safe for concurrent use; records returned are
// copies the caller owns.
type MemberStore interface {
	// GetMember returns one membership, or an error matching ErrNotFound.
	GetMember(ctx context.Context, imageID, memberID string) (*Member, error)
	// ListMembers returns an image's memberships in member ID order.
	ListMembers(ctx context.Context, imageID string) ([]*Member, error)
	// MembershipsOf returns memberID's memberships by image ID.
	MembershipsOf(ctx context.Context, memberID string) (map[string]*Member, error)
	// CreateMember stores a new membership: ErrExists if it exists,
	// ErrTooLarge if the image already has max members.
	CreateMember(ctx context.Context, m *Member, max int) (*Member, error)
	// UpdateMember replaces an existing membership (ErrNotFound if none).
	UpdateMember(ctx context.Context, m *Member) (*Member, error)
	// DeleteMember removes a membership (ErrNotFound if none).
	DeleteMember(ctx context.Context, imageID, memberID string) error
}

// errNoMembers is returned when the metadata store keeps no memberships.
var errNoMembers = Errorf(ErrUnavailable, "Image sharing is not available on this node.")

// memberStore returns the store of memberships: the image store, when it
// also implements MemberStore (raftmeta.Node does).
func (s *Service) memberStore() (MemberStore, error) {
	ms, ok := s.images.(MemberStore)
	if !ok {
		return nil, errNoMembers
	}
	return ms, nil
}

// callerMember returns the caller's membership of img, if any.
func (s *Service) callerMember(ctx context.Context, img *Image) *Member {
	c := CallerFrom(ctx)
	if c == nil || c.ProjectID == "" || img.Visibility != VisibilityShared {
		return nil
	}
	ms, err := s.memberStore()
	if err != nil {
		return nil
	}
	m, err := ms.GetMember(ctx, img.ID, c.ProjectID)
	if err != nil {
		return nil
	}
	return m
}

// imageFor returns an image the caller may act on with act: not found if
// it is deleted or invisible to the caller, forbidden if act is refused.
func (s *Service) imageFor(ctx context.Context, id string, act Action) (*Image, error) {
	img, err := s.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if err := Authorize(ctx, act, Target{Image: img, CallerMember: s.callerMember(ctx, img)}); err != nil {
		return nil, err
	}
	return img, nil
}

// AddMember shares a shared-visibility image with a project (status pending).
func (s *Service) AddMember(ctx context.Context, imageID, memberID string) (*Member, error) {
	img, err := s.imageFor(ctx, imageID, ActionAddMember)
	if err != nil {
		return nil, err
	}
	if img.Visibility != VisibilityShared {
		return nil, Errorf(ErrForbidden, "Not allowed to create members for image %s.", imageID)
	}
	if memberID == "" {
		return nil, Errorf(ErrInvalid, "Member to be added not specified")
	}
	if len(memberID) > 255 {
		return nil, Errorf(ErrInvalid, "Member ID is longer than 255 characters.")
	}
	ms, err := s.memberStore()
	if err != nil {
		return nil, err
	}
	now := s.now()
	m, err := ms.CreateMember(ctx, &Member{ImageID: imageID, MemberID: memberID, Status: MemberPending,
		CreatedAt: now, UpdatedAt: now}, MaxImageMembers)
	switch {
	case errors.Is(err, ErrExists):
		return nil, Errorf(ErrConflict, "Member %s is duplicated for image %s", memberID, imageID)
	case errors.Is(err, ErrTooLarge):
		return nil, Errorf(ErrTooLarge, "The limit has been exceeded on the number of allowed image members for this image. Attempted: %d, Maximum: %d", MaxImageMembers+1, MaxImageMembers)
	}
	return m, err
}

// ListMembers returns a shared image's members. The owner (or an admin)
// sees all; a member sees only its own membership.
func (s *Service) ListMembers(ctx context.Context, imageID string) ([]*Member, error) {
	img, err := s.imageFor(ctx, imageID, ActionGetMembers)
	if err != nil {
		return nil, err
	}
	if img.Visibility != VisibilityShared {
		return nil, Errorf(ErrForbidden, "Only shared images have members.")
	}
	ms, err := s.memberStore()
	if err != nil {
		return nil, err
	}
	list, err := ms.ListMembers(ctx, imageID)
	if err != nil {
		return nil, err
	}
	if c := CallerFrom(ctx); c != nil && !isOwnerOrAdmin(c, img) {
		list = slices.DeleteFunc(list, func(m *Member) bool { return m.MemberID != c.ProjectID })
	}
	return list, nil
}

// GetMember returns one membership of a shared image.
func (s *Service) GetMember(ctx context.Context, imageID, memberID string) (*Member, error) {
	img, err := s.imageFor(ctx, imageID, ActionGetMember)
	if err != nil {
		return nil, err
	}
	notFound := Errorf(ErrNotFound, "%s not found in the member list of the image %s.", memberID, imageID)
	if img.Visibility != VisibilityShared {
		return nil, notFound
	}
	if c := CallerFrom(ctx); c != nil && !isOwnerOrAdmin(c, img) && c.ProjectID != memberID {
		return nil, notFound
	}
	ms, err := s.memberStore()
	if err != nil {
		return nil, err
	}
	m, err := ms.GetMember(ctx, imageID, memberID)
	if errors.Is(err, ErrNotFound) {
		return nil, notFound
	}
	return m, err
}

// UpdateMember sets a membership's status (pending, accepted or rejected).
// Policy comes first: an owner sending a bad status gets 403, as in Glance.
func (s *Service) UpdateMember(ctx context.Context, imageID, memberID, status string) (*Member, error) {
	m, err := s.GetMember(ctx, imageID, memberID)
	if err != nil {
		return nil, err
	}
	img, err := s.Get(ctx, imageID)
	if err != nil {
		return nil, err
	}
	if err := Authorize(ctx, ActionModifyMember, Target{Image: img, Member: m, CallerMember: m}); err != nil {
		return nil, err
	}
	if !slices.Contains([]string{MemberPending, MemberAccepted, MemberRejected}, status) {
		return nil, Errorf(ErrInvalid, `Incorrect request: Status must be "pending", "accepted" or "rejected".`)
	}
	ms, err := s.memberStore()
	if err != nil {
		return nil, err
	}
	m.Status = status
	m.UpdatedAt = s.now()
	return ms.UpdateMember(ctx, m)
}

// DeleteMember removes a membership.
func (s *Service) DeleteMember(ctx context.Context, imageID, memberID string) error {
	img, err := s.imageFor(ctx, imageID, ActionDeleteMember)
	if err != nil {
		return err
	}
	notFound := Errorf(ErrNotFound, "%s not found in the member list of the image %s.", memberID, imageID)
	if img.Visibility != VisibilityShared {
		return notFound
	}
	ms, err := s.memberStore()
	if err != nil {
		return err
	}
	err = ms.DeleteMember(ctx, imageID, memberID)
	if errors.Is(err, ErrNotFound) {
		return notFound
	}
	return err
}
