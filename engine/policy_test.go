package engine

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestAuthorizeTable(t *testing.T) {
	var (
		ownerMember = &Caller{ProjectID: "pA", Roles: []string{"member", "reader"}}
		ownerReader = &Caller{ProjectID: "pA", Roles: []string{"reader"}}
		ownerNoRole = &Caller{ProjectID: "pA", Roles: []string{"_member_"}}
		otherMember = &Caller{ProjectID: "pB", Roles: []string{"member", "reader"}}
		otherReader = &Caller{ProjectID: "pB", Roles: []string{"reader"}}
		unscoped    = &Caller{Roles: []string{"member", "reader"}}
		adminRole   = &Caller{ProjectID: "pX", Roles: []string{"admin", "member", "reader"}}
		noauth      = NoAuthCaller()
	)
	img := func(v string, st Status) *Image {
		return &Image{ID: "11111111-2222-3333-4444-555555555555", Owner: "pA", Visibility: v, Status: st}
	}
	private, shared := img(VisibilityPrivate, StatusActive), img(VisibilityShared, StatusActive)
	community, public := img(VisibilityCommunity, StatusActive), img(VisibilityPublic, StatusActive)
	deactivated := img(VisibilityPublic, StatusDeactivated)
	memberB := &Member{ImageID: shared.ID, MemberID: "pB", Status: MemberPending}

	const ok, forbidden, notFound = "ok", "403", "404"
	cases := []struct {
		name   string
		c      *Caller
		act    Action
		t      Target
		expect string
	}{
		{"owner reads private", ownerMember, ActionGetImage, Target{Image: private}, ok},
		{"owner reader reads private", ownerReader, ActionGetImage, Target{Image: private}, ok},
		{"owner reader downloads", ownerReader, ActionDownloadImage, Target{Image: private}, ok},
		{"owner without a known role reads", ownerNoRole, ActionGetImage, Target{Image: private}, forbidden},
		{"owner without a known role lists", ownerNoRole, ActionGetImages, Target{}, forbidden},
		{"other project: private is invisible", otherMember, ActionGetImage, Target{Image: private}, notFound},
		{"other project: private modify is 404 too", otherMember, ActionModifyImage, Target{Image: private}, notFound},
		{"other project: shared without membership", otherMember, ActionGetImage, Target{Image: shared}, notFound},
		{"other project: shared as a pending member", otherMember, ActionGetImage, Target{Image: shared, CallerMember: memberB}, ok},
		{"other project: community visible", otherReader, ActionDownloadImage, Target{Image: community}, ok},
		{"other project: public visible", otherReader, ActionGetImage, Target{Image: public}, ok},
		{"other project cannot modify public", otherMember, ActionModifyImage, Target{Image: public}, forbidden},
		{"other project cannot delete community", otherMember, ActionDeleteImage, Target{Image: community}, forbidden},
		{"member of shared cannot add members", otherMember, ActionAddMember, Target{Image: shared, CallerMember: memberB}, forbidden},
		{"member accepts", otherMember, ActionModifyMember, Target{Image: shared, Member: memberB, CallerMember: memberB}, ok},
		{"reader member cannot accept", otherReader, ActionModifyMember, Target{Image: shared, Member: memberB, CallerMember: memberB}, forbidden},
		{"owner cannot accept for the member", ownerMember, ActionModifyMember, Target{Image: shared, Member: memberB}, forbidden},
		{"owner member writes", ownerMember, ActionModifyImage, Target{Image: private}, ok},
		{"owner member uploads", ownerMember, ActionUploadImage, Target{Image: private}, ok},
		{"owner member shares", ownerMember, ActionAddMember, Target{Image: shared}, ok},
		{"owner member communitizes", ownerMember, ActionCommunitizeImage, Target{Image: private}, ok},
		{"owner reader cannot modify", ownerReader, ActionModifyImage, Target{Image: private}, forbidden},
		{"owner reader cannot upload", ownerReader, ActionUploadImage, Target{Image: private}, forbidden},
		{"owner reader cannot delete", ownerReader, ActionDeleteImage, Target{Image: private}, forbidden},
		{"owner reader cannot deactivate", ownerReader, ActionDeactivate, Target{Image: private}, forbidden},
		{"owner reader cannot share", ownerReader, ActionAddMember, Target{Image: shared}, forbidden},
		{"owner reader cannot create", ownerReader, ActionAddImage, Target{Image: img(VisibilityShared, StatusQueued)}, forbidden},
		{"owner member creates", ownerMember, ActionAddImage, Target{Image: img(VisibilityShared, StatusQueued)}, ok},
		{"unscoped member creates nothing", unscoped, ActionAddImage, Target{Image: &Image{Visibility: VisibilityShared}}, forbidden},
		{"member cannot publicize", ownerMember, ActionPublicizeImage, Target{Image: private}, forbidden},
		{"admin role publicizes", adminRole, ActionPublicizeImage, Target{Image: private}, ok},
		{"noauth cannot publicize (role:admin)", noauth, ActionPublicizeImage, Target{Image: private}, forbidden},
		{"admin sees others' private", adminRole, ActionGetImage, Target{Image: private}, ok},
		{"admin modifies others' images", adminRole, ActionDeleteImage, Target{Image: private}, ok},
		{"noauth modifies", noauth, ActionModifyImage, Target{Image: private}, ok},
		{"deactivated: owner cannot download", ownerMember, ActionDownloadImage, Target{Image: deactivated}, forbidden},
		{"deactivated: others cannot download", otherReader, ActionDownloadImage, Target{Image: deactivated}, forbidden},
		{"deactivated: owner still reads the record", ownerMember, ActionGetImage, Target{Image: deactivated}, ok},
		{"deactivated: admin downloads", adminRole, ActionDownloadImage, Target{Image: deactivated}, ok},
		{"tasks: member refused", ownerMember, ActionTasksAPI, Target{}, forbidden},
		{"tasks: admin", adminRole, ActionTasksAPI, Target{}, ok},
		{"tasks: noauth refused", noauth, ActionTasksAPI, Target{}, forbidden},
		{"store usage: member refused", ownerMember, ActionStoreUsage, Target{}, forbidden},
		{"store usage: noauth", noauth, ActionStoreUsage, Target{}, ok},
		{"unknown action refused", adminRole, Action("no_such_action"), Target{}, forbidden},
	}
	for _, c := range cases {
		err := Authorize(WithCaller(context.Background(), c.c), c.act, c.t)
		got := ok
		switch {
		case errors.Is(err, ErrNotFound):
			got = notFound
		case errors.Is(err, ErrForbidden):
			got = forbidden
		case err != nil:
			got = err.Error()
		}
		if got != c.expect {
			t.Errorf("%s: %s → %s (%v), want %s", c.name, c.act, got, err, c.expect)
		}
		// A refusal names only what the caller asked for.
		if errors.Is(err, ErrNotFound) && !strings.Contains(err.Error(), c.t.Image.ID) {
			t.Errorf("%s: 404 message %q does not name the ID asked for", c.name, err)
		}
	}
	if err := Authorize(context.Background(), ActionPublicizeImage, Target{}); err != nil {
		t.Fatalf("the system (no caller) was refused: %v", err)
	}
}

// TestEveryActionHasARule keeps the table complete: an action without a
// row would be refused to everyone.
func TestEveryActionHasARule(t *testing.T) {
	for _, a := range []string{
		string(ActionAddImage), string(ActionGetImage), string(ActionGetImages), string(ActionModifyImage),
		string(ActionPublicizeImage), string(ActionCommunitizeImage), string(ActionDeleteImage),
		string(ActionUploadImage), string(ActionDownloadImage), string(ActionDeactivate), string(ActionReactivate),
		string(ActionAddMember), string(ActionGetMember), string(ActionGetMembers), string(ActionModifyMember),
		string(ActionDeleteMember), string(ActionCopyImage), string(ActionSetLocation), string(ActionTasksAPI),
		string(ActionStoresDetail), string(ActionCacheList), string(ActionCacheImage), string(ActionCacheDelete),
		string(ActionStoreUsage), string(SecretActionCreate), string(SecretActionList), string(SecretActionGet),
		string(SecretActionDecrypt), string(SecretActionDelete),
	} {
		if policyByName[a] == nil {
			t.Errorf("action %s has no policy rule", a)
		}
	}
	if len(policyByName) != len(policy) {
		t.Errorf("the policy table has duplicate actions")
	}
}

// TestPolicyTableIsDocumented keeps docs/auth.md's table equal to the code's.
func TestPolicyTableIsDocumented(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "docs", "auth.md"))
	if err != nil {
		t.Fatal(err)
	}
	if want := PolicyTable(); !strings.Contains(string(b), want) {
		t.Fatalf("docs/auth.md does not hold the policy table as engine/policy.go has it; paste this:\n\n%s", want)
	}
}
