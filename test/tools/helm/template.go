package main

import (
	"bytes"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// templater turns rendered objects into Helm templates. A rule replaces a value in the object
// with a sentinel, a word no manifest holds; once the object is YAML text, each sentinel becomes
// the template text it stands for. Sentinels survive YAML encoding untouched, so the templates
// keep exactly the structure and values kustomize rendered everywhere no rule applied.
type templater struct {
	// texts[i] replaces the sentinel __HCT<i>__ inside a scalar; wholes[i] says the text is a
	// complete YAML scalar of its own (it quotes its value), so a scalar that is just that
	// sentinel stays plain; any other scalar holding sentinels is written double-quoted.
	texts  []string
	wholes []bool
	// blocks[i] replaces the line `key: __HCB<i>__`.
	blocks []block
}

// block is the template for a whole value: a YAML fragment (expr's output, indented below its
// key), or an optional line (a scalar key left out when expr is empty).
type block struct {
	expr     string
	optional bool
}

const sentinelPrefix = "__HC"

var (
	textSentinel  = regexp.MustCompile(`__HCT(\d+)__`)
	blockSentinel = regexp.MustCompile(`(?m)^( *)(- )?([^ \n]+): __HCB(\d+)__$`)
)

// quoted is the sentinel for a whole scalar: the value of expr (a pipeline), quoted.
func (t *templater) quoted(expr string) string {
	return t.add("{{ "+expr+" | quote }}", true)
}

// inline is the sentinel for part of a scalar: the value of expr as it is, inside the
// double-quoted scalar that holds it (values.schema.json keeps such values free of quotes and
// backslashes).
func (t *templater) inline(expr string) string { return t.add("{{ "+expr+" }}", false) }

// action is the sentinel for template text that prints nothing ({{ if }}, {{ end }}).
func (t *templater) action(text string) string { return t.add(text, false) }

func (t *templater) add(text string, whole bool) string {
	t.texts = append(t.texts, text)
	t.wholes = append(t.wholes, whole)
	return fmt.Sprintf("__HCT%d__", len(t.texts)-1)
}

// fragment is the sentinel for a value written as the YAML expr prints (e.g. toYaml ...).
func (t *templater) fragment(expr string) string {
	t.blocks = append(t.blocks, block{expr: expr})
	return fmt.Sprintf("__HCB%d__", len(t.blocks)-1)
}

// optionalLine is the sentinel for a scalar whose key is written only when expr is not empty.
func (t *templater) optionalLine(expr string) string {
	t.blocks = append(t.blocks, block{expr: expr, optional: true})
	return fmt.Sprintf("__HCB%d__", len(t.blocks)-1)
}

// yamlText encodes an object (holding sentinels) as a Helm template: YAML with two-space
// indentation and sorted keys, each sentinel replaced by its template text, and any "{{" the
// manifests themselves hold (alert annotations, CEL) escaped so Helm prints it as it is.
func (t *templater) yamlText(obj object) (string, error) {
	var node yaml.Node
	if err := node.Encode(map[string]any(obj)); err != nil {
		return "", err
	}
	t.setStyles(&node)
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&node); err != nil {
		return "", err
	}
	if err := enc.Close(); err != nil {
		return "", err
	}
	text := strings.ReplaceAll(buf.String(), "{{", "{{`{{`}}")
	var err error
	text = blockSentinel.ReplaceAllStringFunc(text, func(line string) string {
		m := blockSentinel.FindStringSubmatch(line)
		indent, dash, key := m[1], m[2], m[3]
		i, _ := strconv.Atoi(m[4])
		b := t.blocks[i]
		if b.optional {
			if dash != "" {
				err = fmt.Errorf("optional key %s cannot start a list item", key)
			}
			return indent + "{{- with " + b.expr + " }}\n" + indent + key + ": {{ . | quote }}\n" + indent + "{{- end }}"
		}
		return fmt.Sprintf("%s%s%s:\n{{- %s | nindent %d }}", indent, dash, key, b.expr, len(indent)+len(dash)+2)
	})
	if err != nil {
		return "", err
	}
	text = textSentinel.ReplaceAllStringFunc(text, func(s string) string {
		i, _ := strconv.Atoi(textSentinel.FindStringSubmatch(s)[1])
		return t.texts[i]
	})
	if strings.Contains(text, sentinelPrefix) {
		return "", fmt.Errorf("a sentinel was left in the template (the YAML encoder split or escaped it):\n%s", text)
	}
	return text, nil
}

// setStyles writes every scalar that holds part-of-scalar sentinels double-quoted, so the
// template text inside it is part of one string whatever the values hold.
func (t *templater) setStyles(n *yaml.Node) {
	if n.Kind == yaml.ScalarNode && strings.Contains(n.Value, sentinelPrefix+"T") {
		m := textSentinel.FindStringSubmatchIndex(n.Value)
		i, _ := strconv.Atoi(n.Value[m[2]:m[3]])
		if !(m[0] == 0 && m[1] == len(n.Value) && t.wholes[i]) {
			n.Style = yaml.DoubleQuotedStyle
		}
	}
	for _, c := range n.Content {
		t.setStyles(c)
	}
}
