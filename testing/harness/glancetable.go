package harness

import (
	"fmt"
	"strings"
)

// ParseGlanceTable parses the Property/Value table the glance CLI prints
// for one object. Values the CLI wrapped over several lines are joined.
func ParseGlanceTable(out string) (map[string]string, error) {
	m := map[string]string{}
	last := ""
	rows := 0
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "|") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		if len(cells) != 2 {
			return nil, fmt.Errorf("glance table: row %q has %d cells", line, len(cells))
		}
		k, v := strings.TrimSpace(cells[0]), strings.TrimSpace(cells[1])
		rows++
		if rows == 1 && k == "Property" {
			continue
		}
		if k == "" && last != "" {
			m[last] += v
			continue
		}
		m[k] = v
		last = k
	}
	if len(m) == 0 {
		return nil, fmt.Errorf("glance table: no rows in %q", out)
	}
	return m, nil
}
