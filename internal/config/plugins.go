package config

import (
	"fmt"
	"os"
	"reflect"
	"strings"

	"github.com/hashicorp/hcl"
	"github.com/hashicorp/hcl/hcl/ast"
)

// pluginBody is what a plugin declaration may hold, as SPIRE's catalog reads it.
type pluginBody struct {
	PluginCmd      string   `hcl:"plugin_cmd"`
	PluginArgs     []string `hcl:"plugin_args"`
	PluginChecksum string   `hcl:"plugin_checksum"`
	PluginData     ast.Node `hcl:"plugin_data"`
	PluginDataFile *string  `hcl:"plugin_data_file"`
	Enabled        *bool    `hcl:"enabled"`
}

// plugin is one plugin declared in the plugins block:
// `NodeAttestor "x509pop" { plugin_data { ... } }`.
type plugin struct {
	Type, Name string
	typeLoc    Location
	nameLoc    Location
	path       string // "plugins.NodeAttestor.x509pop"
	body       *ast.ObjectList

	data    *ast.ObjectList // plugin_data, or the parsed plugin_data_file; nil when absent
	dataDoc *document       // locations inside data
}

// label names the plugin in messages: `NodeAttestor "x509pop"`.
func (p *plugin) label() string {
	return fmt.Sprintf("%s %q", p.Type, p.Name)
}

// at returns where the plugin_data key sits, or the plugin declaration when
// the key is absent.
func (p *plugin) at(key string) Location {
	if p.dataDoc != nil {
		if loc, ok := p.dataDoc.where[p.path+".plugin_data."+key]; ok {
			return loc
		}
	}
	return p.typeLoc
}

// has reports whether plugin_data sets key.
func (p *plugin) has(key string) bool {
	if p.dataDoc == nil {
		return false
	}
	_, ok := p.dataDoc.where[p.path+".plugin_data."+key]
	return ok
}

// plugins reads the plugins block (node as decoded by hcl) in declaration
// order, accepting SPIRE's nesting shapes:
//
//	NodeAttestor "join_token" { plugin_data {} }
//	NodeAttestor { join_token { plugin_data {} } }
//
// It reports duplicate declarations, keys a declaration may not hold,
// external plugins (plugin_cmd), and both plugin_data and plugin_data_file;
// it skips disabled plugins (enabled = false), as SPIRE does. Without a
// plugins block (node nil) there are none.
func (c *checker) plugins(node ast.Node) []*plugin {
	if node == nil {
		return nil
	}
	list := objectList(node)
	if list == nil {
		c.add("plugins", "plugins section must be a block")
		return nil
	}
	var decls []*plugin
	var collect func(items []*ast.ObjectItem, prefix []*ast.ObjectKey)
	collect = func(items []*ast.ObjectItem, prefix []*ast.ObjectKey) {
		for _, item := range items {
			keys := append(append([]*ast.ObjectKey(nil), prefix...), item.Keys...)
			if len(keys) < 2 {
				inner := objectList(item.Val)
				if inner == nil {
					c.addAt(c.d.loc(keys[0].Pos()), "plugin type %q must hold plugin declarations such as %s \"name\" { plugin_data {} }", keyText(keys[0]), keyText(keys[0]))
					continue
				}
				collect(inner.Items, keys)
				continue
			}
			p := &plugin{
				Type:    keyText(keys[0]),
				Name:    keyText(keys[1]),
				typeLoc: c.d.loc(keys[0].Pos()),
				nameLoc: c.d.loc(keys[1].Pos()),
			}
			p.path = "plugins." + p.Type + "." + p.Name
			if len(keys) > 2 {
				p.body = &ast.ObjectList{Items: []*ast.ObjectItem{{Keys: keys[2:], Val: item.Val}}}
			} else if p.body = objectList(item.Val); p.body == nil {
				c.addAt(p.nameLoc, "plugin %s must be a block", p.label())
				continue
			}
			decls = append(decls, p)
		}
	}
	collect(list.Items, nil)

	var out []*plugin
	seen := map[string]bool{}
	for _, p := range decls {
		id := p.Type + "/" + p.Name
		if seen[id] {
			c.addAt(p.nameLoc, "plugin %q/%q declared more than once", p.Type, p.Name)
			continue
		}
		seen[id] = true
		if c.pluginBody(p) {
			out = append(out, p)
		}
	}
	return out
}

// pluginBody checks one declaration's keys and loads its data; it reports
// whether the plugin is enabled and usable.
func (c *checker) pluginBody(p *plugin) bool {
	bodyDoc := &document{path: c.d.path, where: map[string]Location{}}
	bodyDoc.walkStruct(p.body, reflect.TypeFor[pluginBody](), p.path)
	c.problems = append(c.problems, bodyDoc.unknown...)

	var b pluginBody
	if err := hcl.DecodeObject(&b, p.body); err != nil {
		c.addAt(p.nameLoc, "failed to decode plugin %s: %v", p.label(), err)
		return false
	}
	ok := true
	for _, key := range []string{"plugin_cmd", "plugin_args", "plugin_checksum"} {
		if loc, set := bodyDoc.where[p.path+"."+key]; set {
			c.addAt(loc, "plugin %s: external plugins (%s) are not supported; only the built-in plugins are", p.label(), key)
			ok = false
		}
	}
	if b.PluginData != nil && b.PluginDataFile != nil {
		c.addAt(bodyDoc.where[p.path+".plugin_data_file"], "failed to create plugin config for %q/%q: only one of [plugin_data, plugin_data_file] can be used", p.Type, p.Name)
		return false
	}
	if b.Enabled != nil && !*b.Enabled {
		return false
	}
	switch {
	case b.PluginDataFile != nil:
		file := *b.PluginDataFile
		raw, err := os.ReadFile(file)
		if err != nil {
			c.addAt(bodyDoc.where[p.path+".plugin_data_file"], "plugin %s: unable to read plugin_data_file: %v", p.label(), err)
			return false
		}
		parsed, err := hcl.Parse(string(raw))
		if err != nil {
			c.addAt(bodyDoc.where[p.path+".plugin_data_file"], "plugin %s: unable to decode plugin_data_file %q: %v", p.label(), file, err)
			return false
		}
		p.data = objectList(parsed.Node)
		p.dataDoc = &document{path: file, where: map[string]Location{}}
	case b.PluginData != nil:
		p.data = objectList(b.PluginData)
		if p.data == nil {
			c.addAt(bodyDoc.where[p.path+".plugin_data"], "plugin %s: plugin_data must be a block", p.label())
			return false
		}
		p.dataDoc = &document{path: c.d.path, where: map[string]Location{}}
	}
	return ok
}

// decodeData decodes the plugin's plugin_data into out (a pointer to a
// struct with hcl tags), reporting keys out does not declare; it reports
// whether decoding succeeded. Absent plugin_data leaves out untouched.
func (c *checker) decodeData(p *plugin, out any) bool {
	if p.data == nil {
		return true
	}
	p.dataDoc.walkStruct(p.data, reflect.TypeOf(out).Elem(), p.path+".plugin_data")
	for _, u := range p.dataDoc.unknown {
		u.Section = "plugin_data of " + p.label()
		u.Message = fmt.Sprintf("unknown key %q in plugin_data of %s", u.Key, p.label())
		c.problems = append(c.problems, u)
	}
	if err := hcl.DecodeObject(out, p.data); err != nil {
		c.addAt(p.nameLoc, "plugin %s: unable to decode plugin_data: %v", p.label(), err)
		return false
	}
	return true
}

// noBuiltIn reports a plugin name that no built-in plugin of a known type has.
func (c *checker) noBuiltIn(p *plugin, names ...string) {
	c.addAt(p.nameLoc, "no built-in plugin %q for type %q (available: %s)", p.Name, p.Type, strings.Join(names, ", "))
}

// unsupportedType reports a plugin type the process does not have.
func (c *checker) unsupportedType(p *plugin, types ...string) {
	c.addAt(p.typeLoc, "unsupported plugin type %q (types: %s)", p.Type, strings.Join(types, ", "))
}

// noPlugins reports a plugin type that exists in SPIRE but has no built-in
// plugin here.
func (c *checker) noPlugins(p *plugin) {
	c.addAt(p.nameLoc, "no built-in plugin %q for type %q: hive-identity has no %s plugins", p.Name, p.Type, p.Type)
}
