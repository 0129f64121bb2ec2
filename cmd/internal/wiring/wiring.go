// Package wiring holds what every binary's main needs the same way: the API scheme and comma-
// separated flag values. No product logic.
package wiring

import (
	"flag"
	"strings"

	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"

	v1alpha1 "github.com/alauda/harbor-connector/api/v1alpha1"
)

// Scheme knows the built-in types and the Connector API.
func Scheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		return nil, err
	}
	if err := v1alpha1.AddToScheme(s); err != nil {
		return nil, err
	}
	return s, nil
}

// List splits a comma-separated flag value, dropping blanks.
func List(s string) []string {
	var out []string
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// ListFlags bind comma-separated flags to []string fields: a flag's default is its field's value
// joined, and Apply, after the flags are parsed, splits what they hold back into the fields.
type ListFlags struct{ binds []listBind }

type listBind struct {
	field *[]string
	raw   *string
}

// Var registers the flag name for *field.
func (l *ListFlags) Var(fs *flag.FlagSet, field *[]string, name, usage string) {
	raw := new(string)
	fs.StringVar(raw, name, strings.Join(*field, ","), usage)
	l.binds = append(l.binds, listBind{field: field, raw: raw})
}

// Apply sets every field from its flag (List).
func (l *ListFlags) Apply() {
	for _, b := range l.binds {
		*b.field = List(*b.raw)
	}
}
