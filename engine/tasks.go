package engine

import (
	"context"
	"encoding/json"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Task types and statuses (Glance's tasks).
const (
	TaskTypeImport    = "import"
	TaskTypeAPIImport = "api_image_import"

	TaskPending    = "pending"
	TaskProcessing = "processing"
	TaskSuccess    = "success"
	TaskFailure    = "failure"
)

// TaskTTL is how long a finished task stays listed (Glance's task_time_to_live).
const TaskTTL = 48 * time.Hour

// Task is an asynchronous operation: an image import.
type Task struct {
	ID        string          `json:"id"`
	Type      string          `json:"type"`
	Status    string          `json:"status"`
	Input     json.RawMessage `json:"input,omitempty"`
	Result    json.RawMessage `json:"result,omitempty"`
	Owner     string          `json:"owner,omitempty"`
	Message   string          `json:"message"`
	ImageID   string          `json:"image_id,omitempty"`
	RequestID string          `json:"request_id,omitempty"`
	UserID    string          `json:"user_id,omitempty"`
	CreatedAt time.Time       `json:"created_at"`
	UpdatedAt time.Time       `json:"updated_at"`
	ExpiresAt *time.Time      `json:"expires_at,omitempty"`
	// Node is the node running the task, so a restarted node can fail
	// the tasks it died with.
	Node string `json:"node,omitempty"`
}

// Clone returns a deep copy of t.
func (t *Task) Clone() *Task {
	c := *t
	c.Input = slices.Clone(t.Input)
	c.Result = slices.Clone(t.Result)
	if t.ExpiresAt != nil {
		v := *t.ExpiresAt
		c.ExpiresAt = &v
	}
	return &c
}

// TaskStore holds tasks. Implementations replicate them (raftmeta.Node) and
// are safe for concurrent use; records returned are copies.
type TaskStore interface {
	// GetTask returns a task or an error matching ErrNotFound.
	GetTask(ctx context.Context, id string) (*Task, error)
	// ListTasks returns copies of the tasks for which match is true.
	ListTasks(ctx context.Context, match func(*Task) bool) ([]*Task, error)
	// PutTask creates or replaces a task.
	PutTask(ctx context.Context, t *Task) error
}

var errNoTasks = Errorf(ErrUnavailable, "Tasks are not available on this node.")

// taskStore returns the image store when it also keeps tasks.
func (s *Service) taskStore() (TaskStore, error) {
	ts, ok := s.images.(TaskStore)
	if !ok {
		return nil, errNoTasks
	}
	return ts, nil
}

// ImageTasks returns the tasks of an image the caller may see, oldest first.
func (s *Service) ImageTasks(ctx context.Context, imageID string) ([]*Task, error) {
	if _, err := s.imageFor(ctx, imageID, ActionGetImage); err != nil {
		return nil, err
	}
	ts, err := s.taskStore()
	if err != nil {
		return nil, err
	}
	list, err := ts.ListTasks(ctx, func(t *Task) bool { return t.ImageID == imageID })
	if err != nil {
		return nil, err
	}
	slices.SortFunc(list, func(a, b *Task) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return list, nil
}

// GetTask returns a task (tasks API: admin only by Glance's default).
func (s *Service) GetTask(ctx context.Context, id string) (*Task, error) {
	if err := Authorize(ctx, ActionTasksAPI, Target{}); err != nil {
		return nil, err
	}
	ts, err := s.taskStore()
	if err != nil {
		return nil, err
	}
	t, err := ts.GetTask(ctx, id)
	if err != nil || s.taskExpired(t) {
		return nil, Errorf(ErrNotFound, "Task with the given id %s not found", id)
	}
	return t, nil
}

func (s *Service) taskExpired(t *Task) bool {
	return t.ExpiresAt != nil && !t.ExpiresAt.After(s.now())
}

// TaskListQuery is a parsed GET /v2/tasks query.
type TaskListQuery struct {
	Limit        int
	Marker       string
	Status, Type string
	SortKey      string
	Desc         bool
	Params       [][2]string
}

// ParseTaskListQuery validates a GET /v2/tasks query (Glance's tasks
// RequestDeserializer.index).
func ParseTaskListQuery(rawQuery string) (*TaskListQuery, error) {
	q := &TaskListQuery{Limit: DefaultListLimit, SortKey: "created_at", Desc: true}
	for _, kv := range strings.Split(rawQuery, "&") {
		if kv == "" {
			continue
		}
		k, v := splitQueryPair(kv)
		if k != "marker" {
			q.Params = append(q.Params, [2]string{k, v})
		}
		switch k {
		case "limit":
			n, err := strconv.Atoi(v)
			if err != nil {
				return nil, Errorf(ErrInvalid, "limit param must be an integer")
			}
			if n < 0 {
				return nil, Errorf(ErrInvalid, "limit param must be positive")
			}
			q.Limit = min(n, MaxListLimit)
		case "marker":
			if !IsUUID(v) {
				return nil, Errorf(ErrInvalid, "Invalid marker format")
			}
			q.Marker = v
		case "status":
			if !slices.Contains([]string{TaskPending, TaskProcessing, TaskSuccess, TaskFailure}, v) {
				return nil, Errorf(ErrInvalid, "Invalid status value: %s", v)
			}
			q.Status = v
		case "type":
			if v != TaskTypeImport && v != TaskTypeAPIImport {
				return nil, Errorf(ErrInvalid, "Invalid type value: %s", v)
			}
			q.Type = v
		case "sort_key":
			if !slices.Contains([]string{"type", "status", "id", "created_at", "updated_at"}, v) {
				return nil, Errorf(ErrInvalid, "Invalid sort key: %s. It must be one of the following: type, status, id, created_at, updated_at.", v)
			}
			q.SortKey = v
		case "sort_dir":
			switch v {
			case "asc":
				q.Desc = false
			case "desc":
				q.Desc = true
			default:
				return nil, Errorf(ErrInvalid, "Invalid sort direction: %s", v)
			}
		}
	}
	return q, nil
}

func splitQueryPair(kv string) (string, string) {
	k, v, _ := strings.Cut(kv, "=")
	if u, err := url.QueryUnescape(k); err == nil {
		k = u
	}
	if u, err := url.QueryUnescape(v); err == nil {
		v = u
	}
	return k, v
}

// ListTasks returns one page of tasks (tasks API: admin only by default).
func (s *Service) ListTasks(ctx context.Context, q *TaskListQuery) ([]*Task, string, error) {
	if err := Authorize(ctx, ActionTasksAPI, Target{}); err != nil {
		return nil, "", err
	}
	ts, err := s.taskStore()
	if err != nil {
		return nil, "", err
	}
	list, err := ts.ListTasks(ctx, func(t *Task) bool {
		return !s.taskExpired(t) && (q.Status == "" || t.Status == q.Status) && (q.Type == "" || t.Type == q.Type)
	})
	if err != nil {
		return nil, "", err
	}
	key := func(t *Task) string {
		switch q.SortKey {
		case "type":
			return t.Type
		case "status":
			return t.Status
		case "id":
			return t.ID
		case "updated_at":
			return t.UpdatedAt.Format(time.RFC3339Nano)
		}
		return t.CreatedAt.Format(time.RFC3339Nano)
	}
	slices.SortFunc(list, func(a, b *Task) int {
		c := strings.Compare(key(a), key(b))
		if c == 0 {
			c = strings.Compare(a.ID, b.ID)
		}
		if q.Desc {
			return -c
		}
		return c
	})
	if q.Marker != "" {
		i := slices.IndexFunc(list, func(t *Task) bool { return t.ID == q.Marker })
		if i < 0 {
			return nil, "", Errorf(ErrNotFound, "Task with the given id %s not found", q.Marker)
		}
		list = list[i+1:]
	}
	list = list[:min(len(list), q.Limit)]
	next := ""
	if q.Limit > 0 && len(list) == q.Limit {
		next = list[len(list)-1].ID
	}
	return list, next, nil
}

// putTask stores a task, stamping its update time.
func (s *Service) putTask(ctx context.Context, t *Task) error {
	ts, err := s.taskStore()
	if err != nil {
		return err
	}
	t.UpdatedAt = s.now()
	return ts.PutTask(ctx, t)
}
