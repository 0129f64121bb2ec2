package scale_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"
)

// The products' own API users (kubeconfigs envtest issues), so the audit log tells their
// requests apart from the benchmark's.
const (
	proxyUser   = "scale-proxy"
	managerUser = "scale-manager"
)

// auditPolicy records each request of the products once, when it arrives (level Metadata: who,
// verb, resource), and nothing of anyone else's.
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["ResponseStarted", "ResponseComplete", "Panic"]
rules:
- level: Metadata
  users: ["` + proxyUser + `", "` + managerUser + `"]
- level: None
`

type auditEvent struct {
	Verb string `json:"verb"`
	User struct {
		Username string `json:"username"`
	} `json:"user"`
	ObjectRef *struct {
		Resource    string `json:"resource"`
		Subresource string `json:"subresource"`
	} `json:"objectRef"`
	RequestURI string    `json:"requestURI"`
	Received   time.Time `json:"requestReceivedTimestamp"`
}

// requestCounts counts a user's requests in [from, to) by "verb resource".
type requestCounts map[string]int

func (c requestCounts) total() int {
	n := 0
	for _, v := range c {
		n += v
	}
	return n
}

// String lists the counts, largest first, with list, get and watch always shown.
func (c requestCounts) String() string {
	byVerb := map[string]int{}
	for k, v := range c {
		byVerb[strings.Fields(k)[0]] += v
	}
	parts := []string{fmt.Sprintf("list %d", byVerb["list"]), fmt.Sprintf("get %d", byVerb["get"]), fmt.Sprintf("watch %d", byVerb["watch"])}
	var others []string
	for k, v := range c {
		if verb := strings.Fields(k)[0]; verb != "list" && verb != "get" && verb != "watch" {
			others = append(others, fmt.Sprintf("%s %d", k, v))
		}
	}
	sort.Strings(others)
	return strings.Join(append(parts, others...), ", ")
}

// detail lists every "verb resource" count, largest first.
func (c requestCounts) detail() string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return c[keys[i]] > c[keys[j]] || c[keys[i]] == c[keys[j]] && keys[i] < keys[j] })
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %d", k, c[k]))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// countRequests reads the audit log and counts each product user's requests received in
// [from, to).
func countRequests(path string, from, to time.Time) (map[string]requestCounts, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]requestCounts{proxyUser: {}, managerUser: {}}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var e auditEvent
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return nil, fmt.Errorf("audit log: %w", err)
		}
		counts, ok := out[e.User.Username]
		if !ok || e.Received.Before(from) || !e.Received.Before(to) {
			continue
		}
		what := "(non-resource)"
		if e.ObjectRef != nil {
			what = e.ObjectRef.Resource
			if e.ObjectRef.Subresource != "" {
				what += "/" + e.ObjectRef.Subresource
			}
		}
		counts[e.Verb+" "+what]++
	}
	return out, sc.Err()
}
