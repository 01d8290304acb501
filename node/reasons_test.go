package node

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestStatusReasonsComeFromAPI checks that every error status this package
// builds names its reason (and domain) by an api constant, never by a
// literal: the SDK maps exactly the reasons api declares
// (client.TestEveryServerReasonIsMapped), so a reason spelled here alone
// would reach users unmapped.
func TestStatusReasonsComeFromAPI(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	checked := 0
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		f, err := parser.ParseFile(fset, name, src, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.FuncDecl:
				// withReason's own ErrorInfo takes its parameter; its
				// callers are checked instead.
				return n.Name.Name != "withReason"
			case *ast.CallExpr:
				if id, ok := n.Fun.(*ast.Ident); ok && id.Name == "withReason" && len(n.Args) > 1 {
					checked++
					if !isAPIConst(n.Args[1], "Reason") {
						t.Errorf("%s: withReason's reason is %s, not an api.Reason constant", fset.Position(n.Pos()), src[n.Args[1].Pos()-f.FileStart:n.Args[1].End()-f.FileStart])
					}
				}
			case *ast.CompositeLit:
				if sel, ok := n.Type.(*ast.SelectorExpr); !ok || sel.Sel.Name != "ErrorInfo" {
					return true
				}
				for _, el := range n.Elts {
					kv, ok := el.(*ast.KeyValueExpr)
					if !ok {
						continue
					}
					switch key := kv.Key.(*ast.Ident); key.Name {
					case "Reason":
						checked++
						if !isAPIConst(kv.Value, "Reason") {
							t.Errorf("%s: ErrorInfo.Reason is not an api.Reason constant", fset.Position(kv.Pos()))
						}
					case "Domain":
						if !isAPIConst(kv.Value, "ErrorDomain") {
							t.Errorf("%s: ErrorInfo.Domain is not api.ErrorDomain", fset.Position(kv.Pos()))
						}
					}
				}
			}
			return true
		})
	}
	if checked == 0 {
		t.Fatal("found no withReason call or ErrorInfo literal: the check has lost track of how statuses are built")
	}
}

// isAPIConst reports whether e is api.<prefix>... .
func isAPIConst(e ast.Expr, prefix string) bool {
	sel, ok := e.(*ast.SelectorExpr)
	if !ok {
		return false
	}
	pkg, ok := sel.X.(*ast.Ident)
	return ok && pkg.Name == "api" && strings.HasPrefix(sel.Sel.Name, prefix)
}
