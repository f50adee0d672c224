package farm

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"regexp"
	"sort"
	"strconv"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// yamlFormat reads a YAML mapping and writes block-style YAML with sorted
// keys. Types survive a round trip: a string that YAML would read as
// something else ("0", "true", "yes", "null", "1.5", "") is quoted;
// numbers keep their JSON spelling.
type yamlFormat struct{}

func (yamlFormat) Name() string { return "yaml" }

func (f yamlFormat) Read(p string) (Conf, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	c, err := decodeYAML(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return c, nil
}

func (f yamlFormat) Write(p string, c Conf) (bool, error) {
	b, err := f.Encode(c)
	if err != nil {
		return false, err
	}
	return writeFileAtomic(p, b)
}

func (yamlFormat) Encode(c Conf) ([]byte, error) {
	if len(c) == 0 {
		return []byte("{}\n"), nil
	}
	n, err := yamlNode(c)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(n); err != nil {
		return nil, fmt.Errorf("farm: encode yaml: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("farm: encode yaml: %w", err)
	}
	return buf.Bytes(), nil
}

// decodeYAML parses one YAML document holding a mapping. An empty
// document (or a bare null) is an empty Conf, as empty JSON is.
func decodeYAML(b []byte) (Conf, error) {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return Conf{}, nil
		}
		return nil, fmt.Errorf("%w: %v", ErrBadConf, err)
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case err == nil:
		return nil, fmt.Errorf("%w: more than one YAML document", ErrBadConf)
	case !errors.Is(err, io.EOF):
		return nil, fmt.Errorf("%w: %v", ErrBadConf, err)
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	root = resolveAlias(root)
	if root.Kind == yaml.ScalarNode && root.ShortTag() == "!!null" {
		return Conf{}, nil
	}
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%w: not a YAML mapping", ErrBadConf)
	}
	r := &yamlReader{budget: yamlMaxValues}
	return r.mapping(root, "")
}

// yamlMaxValues bounds the values one document may expand to: aliases
// let a few lines stand for billions of values ("billion laughs").
const yamlMaxValues = 1 << 20

// yamlReader turns nodes into Conf values, counting them.
type yamlReader struct {
	budget int
}

func (r *yamlReader) spend(n *yaml.Node) error {
	r.budget--
	if r.budget < 0 {
		return fmt.Errorf("%w: more than %d values once aliases are expanded (line %d)", ErrBadConf, yamlMaxValues, n.Line)
	}
	return nil
}

func resolveAlias(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

// mapping turns a mapping node into a Conf. where is the dotted path
// of the mapping, for errors. Merge keys (<<: *base) are honoured: keys
// given explicitly win over merged ones.
func (r *yamlReader) mapping(n *yaml.Node, where string) (Conf, error) {
	out := Conf{}
	explicit := map[string]bool{}
	var merges []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolveAlias(n.Content[i]), n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			return nil, fmt.Errorf("%w: %s: a key is not a scalar (line %d)", ErrBadConf, orRoot(where), k.Line)
		}
		if k.ShortTag() == "!!merge" {
			merges = append(merges, resolveAlias(v))
			continue
		}
		key := k.Value
		if explicit[key] {
			return nil, fmt.Errorf("%w: %s: duplicate key %q (line %d)", ErrBadConf, orRoot(where), key, k.Line)
		}
		explicit[key] = true
		val, err := r.value(v, subPath(where, key))
		if err != nil {
			return nil, err
		}
		out[key] = val
	}
	for _, m := range merges {
		sources := []*yaml.Node{m}
		if m.Kind == yaml.SequenceNode {
			sources = sources[:0]
			for _, s := range m.Content {
				sources = append(sources, resolveAlias(s))
			}
		}
		for _, s := range sources {
			if s.Kind != yaml.MappingNode {
				return nil, fmt.Errorf("%w: %s: a merge key (<<) takes a mapping or a list of mappings (line %d)", ErrBadConf, orRoot(where), s.Line)
			}
			merged, err := r.mapping(s, where)
			if err != nil {
				return nil, err
			}
			for k, v := range merged {
				if _, ok := out[k]; !ok {
					out[k] = v
				}
			}
		}
	}
	return out, nil
}

func subPath(where, key string) string {
	if where == "" {
		return key
	}
	return where + "." + key
}

func orRoot(where string) string {
	if where == "" {
		return "top level"
	}
	return where
}

// jsonNumber matches a number as JSON spells it.
var jsonNumber = regexp.MustCompile(`^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?$`)

func (r *yamlReader) value(n *yaml.Node, where string) (any, error) {
	n = resolveAlias(n)
	if err := r.spend(n); err != nil {
		return nil, err
	}
	switch n.Kind {
	case yaml.MappingNode:
		return r.mapping(n, where)
	case yaml.SequenceNode:
		out := make([]any, 0, len(n.Content))
		for i, e := range n.Content {
			v, err := r.value(e, fmt.Sprintf("%s[%d]", where, i))
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	case yaml.ScalarNode:
	default:
		return nil, fmt.Errorf("%w: %s: unsupported YAML node (line %d)", ErrBadConf, where, n.Line)
	}
	switch n.ShortTag() {
	case "!!str":
		return n.Value, nil
	case "!!null":
		return nil, nil
	case "!!bool":
		var b bool
		if err := n.Decode(&b); err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrBadConf, where, err)
		}
		return b, nil
	case "!!int", "!!float":
		return yamlNumber(n, where)
	case "!!binary":
		b, err := base64.StdEncoding.DecodeString(n.Value)
		if err != nil || !utf8.Valid(b) {
			return nil, fmt.Errorf("%w: %s: binary data that is not UTF-8 text (line %d)", ErrBadConf, where, n.Line)
		}
		return string(b), nil
	default:
		// Timestamps and application tags (!foo x): the text as written.
		return n.Value, nil
	}
}

// yamlNumber keeps a number spelled as JSON spells it verbatim (so
// 12345678901234567890 loses no digit) and converts YAML's other
// spellings (0x1f, 1_000, +1, .5) to their JSON form.
func yamlNumber(n *yaml.Node, where string) (any, error) {
	if jsonNumber.MatchString(n.Value) {
		return json.Number(n.Value), nil
	}
	var v any
	if err := n.Decode(&v); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrBadConf, where, err)
	}
	switch v := v.(type) {
	case int:
		return json.Number(strconv.Itoa(v)), nil
	case int64:
		return json.Number(strconv.FormatInt(v, 10)), nil
	case uint64:
		return json.Number(strconv.FormatUint(v, 10)), nil
	case float64:
		if math.IsInf(v, 0) || math.IsNaN(v) {
			return nil, fmt.Errorf("%w: %s: %s has no JSON form (quote it to keep it as a string)", ErrBadConf, where, n.Value)
		}
		return json.Number(strconv.FormatFloat(v, 'g', -1, 64)), nil
	}
	return nil, fmt.Errorf("%w: %s: %q is not a number", ErrBadConf, where, n.Value)
}

// yamlNode builds the YAML of a value with sorted keys.
func yamlNode(v any) (*yaml.Node, error) {
	switch v := v.(type) {
	case Conf:
		return yamlMappingNode(v)
	case map[string]any:
		return yamlMappingNode(v)
	case []any:
		n := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
		for _, e := range v {
			en, err := yamlNode(e)
			if err != nil {
				return nil, err
			}
			n.Content = append(n.Content, en)
		}
		if len(v) == 0 {
			n.Style = yaml.FlowStyle
		}
		return n, nil
	case string:
		return yamlString(v), nil
	case json.Number:
		if !jsonNumber.MatchString(string(v)) {
			return nil, fmt.Errorf("farm: encode yaml: %q is not a number", string(v))
		}
		// Every JSON number reads back as a YAML int or float.
		return &yaml.Node{Kind: yaml.ScalarNode, Value: string(v)}, nil
	case bool:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: strconv.FormatBool(v)}, nil
	case nil:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Value: "null"}, nil
	}
	return nil, fmt.Errorf("farm: encode yaml: unsupported value of type %T", v)
}

func yamlMappingNode(m map[string]any) (*yaml.Node, error) {
	n := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	if len(m) == 0 {
		n.Style = yaml.FlowStyle
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		vn, err := yamlNode(m[k])
		if err != nil {
			return nil, err
		}
		n.Content = append(n.Content, yamlString(k), vn)
	}
	return n, nil
}

// yamlString is a string scalar. The encoder quotes a !!str whose plain
// form YAML 1.2 reads as another type ("0", "true", "null", "1.5", "");
// it does not for the YAML 1.1 booleans (yes, on, n...) and sexagesimal
// numbers (1:20) that older parsers (PyYAML, as ZkFarmer used) still read
// as such, so those are quoted here.
func yamlString(s string) *yaml.Node {
	n := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s}
	if yaml11Special(s) {
		n.Style = yaml.DoubleQuotedStyle
	}
	return n
}

var sexagesimal = regexp.MustCompile(`^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$`)

func yaml11Special(s string) bool {
	switch s {
	case "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO",
		"on", "On", "ON", "off", "Off", "OFF":
		return true
	}
	return sexagesimal.MatchString(s)
}
