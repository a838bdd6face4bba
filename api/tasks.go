package api

import (
	"encoding/json"
	"net/http"

	"github.com/mosaicimg/mosaic/engine"
)

func (s *server) imageTasks(w http.ResponseWriter, r *http.Request) {
	list, err := s.o.Tasks.ImageTasks(r.Context(), r.PathValue("image_id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := make([]map[string]any, 0, len(list))
	for _, t := range list {
		// Glance returns the raw database rows here.
		m := taskJSON(t, true)
		m["deleted"] = false
		m["deleted_at"] = nil
		delete(m, "self")
		delete(m, "schema")
		out = append(out, m)
	}
	writeJSON(w, http.StatusOK, map[string]any{"tasks": out})
}

func (s *server) listTasks(w http.ResponseWriter, r *http.Request) {
	if err := s.tasksAllowed(r); err != nil {
		s.writeError(w, r, err)
		return
	}
	q, err := engine.ParseTaskListQuery(r.URL.RawQuery)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	list, next, err := s.o.Tasks.ListTasks(r.Context(), q)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := make([]map[string]any, 0, len(list))
	for _, t := range list {
		out = append(out, taskJSON(t, false))
	}
	first, nextLink := pageLinks("/v2/tasks", q.Params, next)
	body := map[string]any{"tasks": out, "first": first, "schema": "/v2/schemas/tasks"}
	if nextLink != "" {
		body["next"] = nextLink
	}
	writeJSON(w, http.StatusOK, body)
}

// tasksAllowed asks the policy about the tasks API before anything else,
// as Glance does (so a refused caller gets 403 even for a bad query).
func (s *server) tasksAllowed(r *http.Request) error {
	return engine.Authorize(r.Context(), engine.ActionTasksAPI, engine.Target{})
}

func (s *server) getTask(w http.ResponseWriter, r *http.Request) {
	t, err := s.o.Tasks.GetTask(r.Context(), r.PathValue("task_id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, taskJSON(t, true))
}

// deleteTask answers 405: Glance never deletes tasks (they expire).
func (s *server) deleteTask(w http.ResponseWriter, r *http.Request) {
	if err := s.tasksAllowed(r); err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("Allow", "GET")
	s.writeError(w, r, errMethodNotAllowed(r.Method))
}

func (s *server) createTask(w http.ResponseWriter, r *http.Request) {
	if err := s.tasksAllowed(r); err != nil {
		s.writeError(w, r, err)
		return
	}
	body, err := s.readJSONObject(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	t, err := s.o.Tasks.CreateTask(r.Context(), body, w.Header().Get("X-Openstack-Request-Id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("Location", baseURL(r)+"/v2/tasks/"+t.ID)
	writeJSON(w, http.StatusCreated, taskJSON(t, true))
}

// taskJSON renders a task; full includes input, result and message, which
// Glance leaves out of lists.
func taskJSON(t *engine.Task, full bool) map[string]any {
	m := map[string]any{
		"id": t.ID, "type": t.Type, "status": t.Status, "owner": nullable(t.Owner),
		"image_id": t.ImageID, "request_id": t.RequestID, "user_id": nullable(t.UserID),
		"created_at": glanceTime(t.CreatedAt), "updated_at": glanceTime(t.UpdatedAt),
		"self": "/v2/tasks/" + t.ID, "schema": "/v2/schemas/task",
	}
	if t.ExpiresAt != nil {
		m["expires_at"] = glanceTime(*t.ExpiresAt)
	}
	if full {
		m["input"] = rawOrNull(t.Input)
		m["result"] = rawOrNull(t.Result)
		m["message"] = t.Message
	}
	return m
}

func rawOrNull(b json.RawMessage) any {
	if len(b) == 0 {
		return nil
	}
	return b
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}
