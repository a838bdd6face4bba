package engine

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"slices"
)

// This file holds the Glance image operations as the API performs them on
// behalf of the request's caller: policy (Authorize), Glance's attribute
// rules, then the record change. Create/Get/Update/Delete in service.go are
// the caller-agnostic primitives underneath.

// CreateImage validates a POST /v2/images body and creates the image for
// the caller, who becomes its owner unless an admin names another.
func (s *Service) CreateImage(ctx context.Context, body map[string]json.RawMessage) (*Image, error) {
	img, err := ImageFromCreate(body)
	if err != nil {
		return nil, err
	}
	_, ownerGiven := body["owner"]
	if c := CallerFrom(ctx); c != nil {
		if !ownerGiven {
			img.Owner = c.ProjectID
		} else if !c.Admin() && img.Owner != c.ProjectID {
			return nil, Errorf(ErrForbidden, "You are not permitted to create images owned by '%s'.", img.Owner)
		}
	}
	if err := Authorize(ctx, ActionAddImage, Target{Image: img}); err != nil {
		return nil, err
	}
	if img.Visibility == VisibilityPublic {
		if err := Authorize(ctx, ActionPublicizeImage, Target{Image: img}); err != nil {
			return nil, err
		}
	}
	return s.Create(ctx, img)
}

// ShowImage returns an image the caller may see.
func (s *Service) ShowImage(ctx context.Context, id string) (*Image, error) {
	return s.imageFor(ctx, id, ActionGetImage)
}

// DeleteImage deletes an image on behalf of the caller.
func (s *Service) DeleteImage(ctx context.Context, id string) error {
	if _, err := s.imageFor(ctx, id, ActionDeleteImage); err != nil {
		if errors.Is(err, ErrNotFound) {
			return Errorf(ErrNotFound, "Failed to find image %s to delete", id)
		}
		return err
	}
	err := s.Delete(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return Errorf(ErrNotFound, "Failed to find image %s to delete", id)
	}
	return err
}

// Deactivate makes an active image's data unavailable to non-admins.
// Deactivating a deactivated image does nothing.
func (s *Service) Deactivate(ctx context.Context, id string) error {
	return s.setActivation(ctx, id, ActionDeactivate, StatusDeactivated, StatusActive, "deactivate")
}

// Reactivate undoes Deactivate. Reactivating an active image does nothing.
func (s *Service) Reactivate(ctx context.Context, id string) error {
	return s.setActivation(ctx, id, ActionReactivate, StatusActive, StatusDeactivated, "reactivate")
}

func (s *Service) setActivation(ctx context.Context, id string, act Action, to, from Status, verb string) error {
	if _, err := s.imageFor(ctx, id, act); err != nil {
		return err
	}
	_, err := s.Update(ctx, id, func(img *Image) error {
		switch img.Status {
		case to:
			return errAbandon
		case from:
			img.Status = to
			return nil
		}
		return Errorf(ErrForbidden, "Not allowed to %s image in status '%s'", verb, img.Status)
	})
	if errors.Is(err, errAbandon) {
		return nil
	}
	return err
}

// AddTag adds a tag to an image; adding a present tag does nothing.
func (s *Service) AddTag(ctx context.Context, id, tag string) error {
	if _, err := s.imageFor(ctx, id, ActionModifyImage); err != nil {
		if errors.Is(err, ErrNotFound) {
			return Errorf(ErrNotFound, "Image %s not found.", id)
		}
		return err
	}
	if err := ValidateTag(tag); err != nil {
		return err
	}
	_, err := s.Update(ctx, id, func(img *Image) error {
		if slices.Contains(img.Tags, tag) {
			return errAbandon
		}
		if len(img.Tags) >= MaxImageTags {
			return Errorf(ErrTooLarge, "Image tag limit exceeded for image %s: The limit has been exceeded on the number of allowed image tags. Attempted: %d, Maximum: %d:", id, len(img.Tags)+1, MaxImageTags)
		}
		img.Tags = append(img.Tags, tag)
		return nil
	})
	if errors.Is(err, errAbandon) {
		return nil
	}
	return err
}

// DeleteTag removes a tag; ErrNotFound if the image does not have it.
func (s *Service) DeleteTag(ctx context.Context, id, tag string) error {
	if _, err := s.imageFor(ctx, id, ActionModifyImage); err != nil {
		if errors.Is(err, ErrNotFound) {
			return Errorf(ErrNotFound, "Image %s not found.", id)
		}
		return err
	}
	_, err := s.Update(ctx, id, func(img *Image) error {
		i := slices.Index(img.Tags, tag)
		if i < 0 {
			return Errorf(ErrNotFound, "The resource could not be found.")
		}
		img.Tags = slices.Delete(img.Tags, i, i+1)
		return nil
	})
	return err
}

// UploadData stores r as the image's data on behalf of the caller.
func (s *Service) UploadData(ctx context.Context, id string, r io.Reader) (*Image, error) {
	if _, err := s.imageFor(ctx, id, ActionUploadImage); err != nil {
		return nil, err
	}
	return s.Upload(ctx, id, r)
}

// OpenData opens the image's data for the caller. ErrNoData if it has none.
func (s *Service) OpenData(ctx context.Context, id string) (*ImageReader, *Image, error) {
	img, err := s.imageFor(ctx, id, ActionDownloadImage)
	if err != nil {
		return nil, nil, err
	}
	r, err := s.OpenRecord(ctx, img)
	return r, img, err
}
