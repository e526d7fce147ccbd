package cli

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// outputFlag is the -output flag: pretty (default) or json.
type outputFlag struct {
	json bool
	set  bool
}

func addOutputFlag(fs *flag.FlagSet) *outputFlag {
	o := new(outputFlag)
	fs.Var(o, "output", "Output format, pretty or json; pretty when not given.")
	return o
}

// String is "pretty" for the zero value too, so the flag package prints no default.
func (o *outputFlag) String() string {
	if o != nil && o.json {
		return "json"
	}
	return "pretty"
}

func (o *outputFlag) Set(v string) error {
	if o.set && o.String() != v {
		return fmt.Errorf("the output format has already been set to %q", o.String())
	}
	switch strings.ToLower(v) {
	case "json":
		o.json = true
	case "pretty", "prettyprint":
		o.json = false
	default:
		return fmt.Errorf("bad formatter flag: unknown format option: %q", v)
	}
	o.set = true
	return nil
}

// printProto writes msg as one line of JSON the way SPIRE's CLI does: protojson
// with proto field names and unpopulated fields, re-encoded through a generic
// value so keys are sorted, nulls are dropped and HTML characters escaped.
func printProto(w io.Writer, msg proto.Message) error {
	raw, err := protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}.Marshal(msg)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return err
	}
	return json.NewEncoder(w).Encode(dropNulls(v))
}

func dropNulls(v any) any {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if x == nil {
				delete(v, k)
				continue
			}
			v[k] = dropNulls(x)
		}
		return v
	case []any:
		out := make([]any, 0, len(v))
		for _, x := range v {
			if x != nil {
				out = append(out, dropNulls(x))
			}
		}
		return out
	default:
		return v
	}
}

// printStruct writes v with encoding/json on one line (SPIRE's output for
// results that are not API messages, in struct field order).
func printStruct(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(w, string(b))
	return err
}
