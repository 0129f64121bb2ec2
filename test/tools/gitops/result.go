package main

import (
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"sort"
	"strings"
)

// The status of one object under one tool.
const (
	// statusInSync: the tool reports no difference (Argo CD: Synced; Flux: unchanged).
	statusInSync = "in sync"
	// statusDrift: the tool reports a difference (Argo CD: OutOfSync; Flux: configured, or
	// created when the object is missing).
	statusDrift = "drift"
	// statusError: the tool could not compare, e.g. the dry-run apply was refused; Argo CD shows
	// a ComparisonError and Flux fails the reconciliation.
	statusError = "error"
)

// result is one object's comparison by one tool.
type result struct {
	Tool    string        `json:"tool"`
	Object  string        `json:"object"` // "apiVersion Kind namespace/name"
	Status  string        `json:"status"`
	Missing bool          `json:"missing,omitempty"` // drift: the object is not in the cluster
	Fields  []fieldChange `json:"fields,omitempty"`
	Error   string        `json:"error,omitempty"`
}

// fieldChange is one field that differs between the live object and what the tool wants it to
// be. It only explains a drift: whether there is one is the tool's own verdict.
type fieldChange struct {
	Path    string `json:"path"`
	Live    any    `json:"live"`              // absent when the field is only desired
	Desired any    `json:"desired,omitempty"` // absent when the field is only live
}

func printResults(w io.Writer, format string, results []result) error {
	if format == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(results)
	}
	for _, r := range results {
		switch {
		case r.Status == statusError:
			fmt.Fprintf(w, "%-18s %s: error: %s\n", r.Tool, r.Object, shortError(r.Error))
		case r.Missing:
			fmt.Fprintf(w, "%-18s %s: %s: missing from the cluster\n", r.Tool, r.Object, r.Status)
		default:
			fmt.Fprintf(w, "%-18s %s: %s\n", r.Tool, r.Object, r.Status)
		}
		for _, f := range r.Fields {
			fmt.Fprintf(w, "    %s: live %s, desired %s\n", f.Path, short(f.Live), short(f.Desired))
		}
	}
	return nil
}

// shortError keeps a long error readable in text output: the API server quotes a whole pod
// template when it refuses an immutable change (-o json has the full message).
func shortError(s string) string {
	if len(s) <= 400 {
		return s
	}
	return s[:300] + " ... " + s[len(s)-80:]
}

func short(v any) string {
	if v == nil {
		return "(none)"
	}
	b, _ := json.Marshal(v)
	if s := string(b); len(s) <= 160 {
		return s
	}
	return string(b[:157]) + "..."
}

// changedFields lists the leaf fields that differ between two JSON objects, with paths such as
// spec.containers[name=app].image: list items that all carry a name are matched by name, as
// strategic merge and server-side apply match containers, env and volumes.
func changedFields(live, desired any) []fieldChange {
	var changes []fieldChange
	walk("", live, desired, &changes)
	return changes
}

func walk(path string, live, desired any, changes *[]fieldChange) {
	if reflect.DeepEqual(live, desired) {
		return
	}
	switch l := live.(type) {
	case map[string]any:
		if d, ok := desired.(map[string]any); ok {
			for _, k := range unionKeys(l, d) {
				walk(join(path, k), l[k], d[k], changes)
			}
			return
		}
	case []any:
		if d, ok := desired.([]any); ok {
			if ln, dn := byName(l), byName(d); ln != nil && dn != nil {
				for _, k := range unionKeys(ln, dn) {
					walk(fmt.Sprintf("%s[name=%s]", path, k), ln[k], dn[k], changes)
				}
				return
			}
			if len(l) == len(d) {
				for i := range l {
					walk(fmt.Sprintf("%s[%d]", path, i), l[i], d[i], changes)
				}
				return
			}
		}
	}
	*changes = append(*changes, fieldChange{Path: path, Live: live, Desired: desired})
}

// byName indexes a list whose items are all objects with a distinct string "name", or returns nil.
func byName(list []any) map[string]any {
	if len(list) == 0 {
		return nil
	}
	m := map[string]any{}
	for _, item := range list {
		o, ok := item.(map[string]any)
		if !ok {
			return nil
		}
		name, ok := o["name"].(string)
		if !ok {
			return nil
		}
		if _, dup := m[name]; dup {
			return nil
		}
		m[name] = item
	}
	return m
}

func join(path, key string) string {
	if strings.ContainsAny(key, "./") {
		key = "[" + key + "]"
		return path + key
	}
	if path == "" {
		return key
	}
	return path + "." + key
}

// unionKeys returns the keys of a and b, sorted.
func unionKeys(a, b map[string]any) []string {
	var keys []string
	for k := range a {
		keys = append(keys, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return keys
}
