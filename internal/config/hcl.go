package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"

	"github.com/hashicorp/hcl"
	"github.com/hashicorp/hcl/hcl/ast"
	"github.com/hashicorp/hcl/hcl/token"
)

// LoadOptions controls how a configuration file is read.
type LoadOptions struct {
	// ExpandEnv replaces $VAR and ${VAR} in the file text with Getenv's
	// values before parsing, as SPIRE's -expandEnv flag does; "$$" stands for
	// a literal "$". Unset variables expand to the empty string.
	ExpandEnv bool
	// Getenv looks variables up; it is required when ExpandEnv is set (the
	// CLI passes os.Getenv).
	Getenv func(string) string
}

// ExpandEnv returns data with $VAR and ${VAR} replaced by getenv's values and
// "$$" by "$", as SPIRE expands a configuration file.
func ExpandEnv(data string, getenv func(string) string) string {
	return os.Expand(data, func(key string) string {
		if key == "$" {
			return "$"
		}
		return getenv(key)
	})
}

// document is a decoded configuration file: where each known key sits and
// which keys are unknown.
type document struct {
	path    string
	where   map[string]Location // key path ("server.ca_ttl") -> where the key is written
	unknown []Problem
}

// source is what AgentFile and ServerFile keep of the text they were
// decoded from: its key index, or none for a file built in code.
type source struct {
	doc *document
}

// document returns the file's key index, empty for a file built in code.
func (s *source) document() *document {
	if s.doc == nil {
		s.doc = &document{where: map[string]Location{}}
	}
	return s.doc
}

func (s *source) keep(d *document) { s.doc = d }

// decodedFile is a configuration file type (*AgentFile, *ServerFile): it
// keeps the key index of the text it was decoded from.
type decodedFile interface{ keep(*document) }

// fileOrNil is f, or nil when err is set: what LoadX and ParseX return.
func fileOrNil[F any](f *F, err error) (*F, error) {
	if err != nil {
		return nil, err
	}
	return f, nil
}

// readDocument reads path (or defaultPath when path is empty), expands the
// environment if asked, and decodes the HCL into out, recording in out the
// location of every key and every key out's type does not declare. Its
// errors are SPIRE's: a missing file, an unreadable one, a syntax error.
func readDocument(path, defaultPath string, opts LoadOptions, out decodedFile) error {
	if path == "" {
		path = defaultPath
	}
	raw, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		abs, absErr := filepath.Abs(path)
		if absErr != nil {
			return fmt.Errorf("could not determine CWD; config file not found at %s: use -config", path)
		}
		return fmt.Errorf("could not find config file %s: please use the -config flag", abs)
	}
	if err != nil {
		return fmt.Errorf("unable to read configuration at %q: %w", path, err)
	}
	data := string(raw)
	if opts.ExpandEnv {
		getenv := opts.Getenv
		if getenv == nil {
			getenv = func(string) string { return "" }
		}
		data = ExpandEnv(data, getenv)
	}
	if err := decodeDocument(path, data, out); err != nil {
		return fmt.Errorf("unable to decode configuration at %q: %w", path, err)
	}
	return nil
}

// decodeDocument parses data as HCL into out and indexes its keys in out;
// name is the file name used in locations.
func decodeDocument(name, data string, out decodedFile) (err error) {
	// hcl v1 panics on some malformed input (an empty block where a string
	// belongs); report it as a decoding error instead of crashing.
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("malformed configuration: %v", r)
		}
	}()
	file, err := hcl.Parse(data)
	if err != nil {
		return err
	}
	if err := hcl.DecodeObject(out, file.Node); err != nil {
		return err
	}
	d := &document{path: name, where: map[string]Location{}}
	if list, ok := file.Node.(*ast.ObjectList); ok {
		d.walkStruct(list, reflect.TypeOf(out).Elem(), "")
	}
	out.keep(d)
	return nil
}

// at returns where the key at path is written, or the file itself when the
// key is absent.
func (d *document) at(path string) Location {
	if loc, ok := d.where[path]; ok {
		return loc
	}
	return Location{File: d.path}
}

// has reports whether the key at path is written in the file.
func (d *document) has(path string) bool {
	_, ok := d.where[path]
	return ok
}

// overridden records that the value at path now comes from a flag.
func (d *document) overridden(path, flag string) {
	d.where[path] = Location{Flag: flag}
}

// override sets *dst to a flag's value when the flag is set (value is not
// T's zero value) and records that the key at path now comes from flag.
func override[T comparable](d *document, path, flag string, value T, dst *T) {
	var unset T
	if value != unset {
		*dst = value
		d.overridden(path, flag)
	}
}

func (d *document) loc(p token.Pos) Location {
	return Location{File: d.path, Line: p.Line, Column: p.Column}
}

var astNodeType = reflect.TypeFor[ast.Node]()

// walkStruct indexes the items of list against the hcl-tagged fields of t,
// the way hcl's decoder matches them (case-insensitively, a multi-key item
// "a b { }" being key a holding "b { }").
func (d *document) walkStruct(list *ast.ObjectList, t reflect.Type, path string) {
	for _, item := range list.Items {
		if len(item.Keys) == 0 {
			continue
		}
		key := keyText(item.Keys[0])
		name, ft, ok := hclField(t, key)
		if !ok {
			d.unknown = append(d.unknown, Problem{
				Location: d.loc(item.Keys[0].Pos()),
				Message:  fmt.Sprintf("unknown key %q in %s", key, describeSection(path)),
				Section:  sectionName(path),
				Key:      key,
			})
			continue
		}
		// A key written twice takes its last value, as hcl decodes it.
		child := joinPath(path, name)
		d.where[child] = d.loc(item.Keys[0].Pos())
		d.walkValue(itemValue(item), ft, child)
	}
}

func (d *document) walkValue(node ast.Node, t reflect.Type, path string) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == astNodeType {
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		if list := objectList(node); list != nil {
			d.walkStruct(list, t, path)
		}
	case reflect.Map:
		list := objectList(node)
		if list == nil {
			return
		}
		for _, item := range list.Items {
			if len(item.Keys) == 0 {
				continue
			}
			child := joinPath(path, keyText(item.Keys[0]))
			d.where[child] = d.loc(item.Keys[0].Pos())
			d.walkValue(itemValue(item), t.Elem(), child)
		}
	case reflect.Slice:
		elem := t.Elem()
		for elem.Kind() == reflect.Pointer {
			elem = elem.Elem()
		}
		if elem.Kind() != reflect.Struct {
			return
		}
		if lt, ok := node.(*ast.ListType); ok {
			for _, n := range lt.List {
				d.walkValue(n, elem, path)
			}
			return
		}
		d.walkValue(node, elem, path)
	}
}

// itemValue is what an item's first key holds: its value, or for a
// multi-key item ("NodeAttestor "x509pop" { }") the rest of the item.
func itemValue(item *ast.ObjectItem) ast.Node {
	if len(item.Keys) > 1 {
		return &ast.ObjectList{Items: []*ast.ObjectItem{{Keys: item.Keys[1:], Val: item.Val}}}
	}
	return item.Val
}

func objectList(node ast.Node) *ast.ObjectList {
	switch n := node.(type) {
	case *ast.ObjectList:
		return n
	case *ast.ObjectType:
		return n.List
	}
	return nil
}

func keyText(k *ast.ObjectKey) string {
	if s, ok := k.Token.Value().(string); ok {
		return s
	}
	return k.Token.Text
}

// hclField finds the field of struct t that hcl decodes key into.
func hclField(t reflect.Type, key string) (string, reflect.Type, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("hcl"), ",")
		if name == "-" || name == "" {
			continue
		}
		if strings.EqualFold(name, key) {
			return name, f.Type, true
		}
	}
	return "", nil, false
}

func joinPath(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// sectionName names the block at path as SPIRE's "Unknown configuration
// detected" log does; blocks SPIRE does not check are named by their path.
func sectionName(path string) string {
	switch path {
	case "":
		return "top-level"
	case "server.ca_subject":
		return "ca_subject"
	case "server.ratelimit":
		return "ratelimit"
	case "server.federation.bundle_endpoint":
		return "bundle endpoint"
	case "server.federation.bundle_endpoint.acme":
		return "bundle endpoint ACME"
	case "telemetry.Prometheus":
		return "Prometheus"
	case "telemetry.DogStatsd":
		return "DogStatsd"
	case "telemetry.Statsd":
		return "Statsd"
	case "telemetry.M3":
		return "M3"
	case "telemetry.InMem":
		return "InMem"
	case "health_checks":
		return "health check"
	}
	return path
}

func describeSection(path string) string {
	if path == "" {
		return "the top level"
	}
	return "section " + path
}
