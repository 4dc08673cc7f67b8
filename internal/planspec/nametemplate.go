package planspec

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"text/template"
	"text/template/parse"
	"unicode/utf8"

	"github.com/vmrestore/vmrestore/internal/job"
	"github.com/vmrestore/vmrestore/internal/zstack"
)

// A name template is a name: literal text, the item's fields, and a few string functions,
// piped as in Go templates ({{.SourceName | lower}}-dr). Nothing that loops, branches,
// defines or calls other templates, or formats numbers to a width is accepted, so a template
// runs in time proportional to its length, and its output stops at a name's limit.

// MaxNameTemplateLength bounds a name template's text.
const MaxNameTemplateLength = 1024

// nameFields are the fields a name template may use (nameData's).
var nameFields = []string{"SourceName", "SourceUUID", "GroupName", "GroupUUID", "Tier", "Index"}

// maxNameBytes bounds every string a name template makes, the name and the values piped
// through its functions alike: a name of MaxNameLen characters takes at most 4 bytes each.
// Without a bound on the values, a chain of replace could grow them exponentially.
const maxNameBytes = 4 * job.MaxNameLen

// bounded wraps a string function so that neither its input nor its result passes
// maxNameBytes.
func bounded(f func(string) string) func(string) (string, error) {
	return func(s string) (string, error) {
		if len(s) > maxNameBytes {
			return "", errNameTooLong
		}
		if out := f(s); len(out) <= maxNameBytes {
			return out, nil
		}
		return "", errNameTooLong
	}
}

// nameFuncs are the functions a name template may call. The value piped in comes last.
var nameFuncs = template.FuncMap{
	"lower": bounded(strings.ToLower),
	"upper": bounded(strings.ToUpper),
	"trimPrefix": func(prefix, s string) (string, error) {
		return bounded(func(s string) string { return strings.TrimPrefix(s, prefix) })(s)
	},
	"trimSuffix": func(suffix, s string) (string, error) {
		return bounded(func(s string) string { return strings.TrimSuffix(s, suffix) })(s)
	},
	"replace": func(old, new, s string) (string, error) {
		if len(s) > maxNameBytes {
			return "", errNameTooLong
		}
		n := strings.Count(s, old) // for "", one more than the characters of s
		if len(s)+n*(len(new)-len(old)) > maxNameBytes {
			return "", errNameTooLong // known before the string is built
		}
		return strings.ReplaceAll(s, old, new), nil
	},
	"truncate": func(n int, s string) string { // any input: the result is at most n characters
		if n < 0 {
			n = 0
		}
		for i := range s {
			if n == 0 {
				return s[:i]
			}
			n--
		}
		return s
	},
}

var nameFuncNames = []string{"lower", "upper", "replace", "trimPrefix", "trimSuffix", "truncate"}

// errNameTooLong stops a template whose output passes a name's limit.
var errNameTooLong = fmt.Errorf("the name would be longer than %d characters", job.MaxNameLen)

// nameTemplate is a checked name template.
type nameTemplate struct{ t *template.Template }

// parseNameTemplate parses and checks a name template; a refusal names the construct.
func parseNameTemplate(text string) (*nameTemplate, *zstack.ErrorCode) {
	refuse := func(format string, args ...any) *zstack.ErrorCode {
		return zstack.InvalidArgument("defaults.nameTemplate %s; a name template may use literal text, the fields .%s, and the functions %s",
			fmt.Sprintf(format, args...), strings.Join(nameFields, ", ."), strings.Join(nameFuncNames, ", "))
	}
	if len(text) > MaxNameTemplateLength {
		return nil, refuse("is %d characters long, more than %d", len(text), MaxNameTemplateLength)
	}
	t, err := template.New("name").Option("missingkey=error").Funcs(nameFuncs).Parse(text)
	if err != nil {
		return nil, zstack.InvalidArgument("defaults.nameTemplate %q does not parse: %v", text, err)
	}
	if len(t.Templates()) > 1 {
		return nil, refuse("uses {{define}} or {{block}}")
	}
	if t.Tree == nil || t.Root == nil {
		return &nameTemplate{t: t}, nil
	}
	for _, n := range t.Root.Nodes {
		if what := refusedNode(n); what != "" {
			return nil, refuse("uses %s", what)
		}
	}
	return &nameTemplate{t: t}, nil
}

// refusedNode names what a top-level node of a name template uses that a name may not, or "".
func refusedNode(n parse.Node) string {
	switch n := n.(type) {
	case *parse.TextNode, *parse.CommentNode:
		return ""
	case *parse.ActionNode:
		return refusedPipe(n.Pipe)
	case *parse.IfNode:
		return "{{if}}"
	case *parse.RangeNode:
		return "{{range}}"
	case *parse.WithNode:
		return "{{with}}"
	case *parse.TemplateNode:
		return "{{template}}"
	case *parse.BreakNode, *parse.ContinueNode:
		return "{{break}} or {{continue}}"
	}
	return fmt.Sprintf("%q", n.String())
}

func refusedPipe(p *parse.PipeNode) string {
	if len(p.Decl) > 0 || p.IsAssign {
		return "variables"
	}
	for _, cmd := range p.Cmds {
		for _, arg := range cmd.Args {
			if what := refusedArg(arg); what != "" {
				return what
			}
		}
		if f, ok := cmd.Args[0].(*parse.FieldNode); ok && len(cmd.Args) > 1 {
			return fmt.Sprintf("the field %s with arguments", f)
		}
	}
	return ""
}

// refusedArg names what one argument of a command uses that a name may not, or "".
func refusedArg(arg parse.Node) string {
	switch a := arg.(type) {
	case *parse.FieldNode:
		if len(a.Ident) != 1 || !contains(nameFields, a.Ident[0]) {
			return "the field " + a.String()
		}
	case *parse.IdentifierNode:
		if !contains(nameFuncNames, a.Ident) {
			return "the function " + a.Ident
		}
	case *parse.StringNode:
	case *parse.NumberNode:
		if !a.IsInt || a.Int64 < 0 || a.Int64 > job.MaxNameLen {
			return "the number " + a.Text + " (only whole numbers up to 255)"
		}
	case *parse.PipeNode:
		return refusedPipe(a)
	case *parse.DotNode:
		return "{{.}}"
	case *parse.VariableNode:
		return "variables"
	default:
		return fmt.Sprintf("%q", arg.String())
	}
	return ""
}

// cappedBuffer is a name being written; past the limit it stops the template.
type cappedBuffer struct{ bytes.Buffer }

func (b *cappedBuffer) Write(p []byte) (int, error) {
	if b.Len()+len(p) > maxNameBytes {
		return 0, errNameTooLong
	}
	return b.Buffer.Write(p)
}

// execute builds one item's name.
func (n *nameTemplate) execute(d nameData) (string, error) {
	var b cappedBuffer
	if err := n.t.Execute(&b, d); err != nil {
		if errors.Is(err, errNameTooLong) {
			return "", errNameTooLong
		}
		return "", err
	}
	if utf8.RuneCount(b.Bytes()) > job.MaxNameLen {
		return "", errNameTooLong
	}
	return b.String(), nil
}
