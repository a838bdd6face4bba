package api

import (
	"encoding/json"
	"net/http"

	"github.com/mosaicimg/mosaic/engine"
)

func (s *server) addMember(w http.ResponseWriter, r *http.Request) {
	body, err := s.readJSONObject(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var member string
	if raw, ok := body["member"]; !ok || json.Unmarshal(raw, &member) != nil || member == "" {
		s.writeError(w, r, engine.Errorf(engine.ErrInvalid, "Member to be added not specified"))
		return
	}
	m, err := s.o.Members.AddMember(r.Context(), r.PathValue("image_id"), member)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, memberJSON(m))
}

func (s *server) listMembers(w http.ResponseWriter, r *http.Request) {
	list, err := s.o.Members.ListMembers(r.Context(), r.PathValue("image_id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := make([]map[string]any, 0, len(list))
	for _, m := range list {
		out = append(out, memberJSON(m))
	}
	writeJSON(w, http.StatusOK, map[string]any{"members": out, "schema": "/v2/schemas/members"})
}

func (s *server) getMember(w http.ResponseWriter, r *http.Request) {
	m, err := s.o.Members.GetMember(r.Context(), r.PathValue("image_id"), r.PathValue("member_id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, memberJSON(m))
}

func (s *server) updateMember(w http.ResponseWriter, r *http.Request) {
	body, err := s.readJSONObject(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var status string
	if raw, ok := body["status"]; !ok || json.Unmarshal(raw, &status) != nil {
		s.writeError(w, r, engine.Errorf(engine.ErrInvalid, "Status not specified"))
		return
	}
	m, err := s.o.Members.UpdateMember(r.Context(), r.PathValue("image_id"), r.PathValue("member_id"), status)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, memberJSON(m))
}

func (s *server) deleteMember(w http.ResponseWriter, r *http.Request) {
	s.noContent(w, r, s.o.Members.DeleteMember(r.Context(), r.PathValue("image_id"), r.PathValue("member_id")))
}

func memberJSON(m *engine.Member) map[string]any {
	return map[string]any{
		"member_id": m.MemberID, "image_id": m.ImageID, "status": m.Status,
		"created_at": glanceTime(m.CreatedAt), "updated_at": glanceTime(m.UpdatedAt),
		"schema": "/v2/schemas/member",
	}
}
