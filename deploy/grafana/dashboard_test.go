package grafana

import (
	"bytes"
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
)

const committed = "shakenline.json"

// TestJSONCurrent fails when the committed dashboard is not what the
// generator makes now.
func TestJSONCurrent(t *testing.T) {
	want, err := JSON()
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(committed)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s is stale: run `go generate ./deploy/grafana` and commit it", committed)
	}
}

type panelJSON struct {
	ID      int    `json:"id"`
	Type    string `json:"type"`
	Title   string `json:"title"`
	GridPos struct {
		X, Y, W, H int
	} `json:"gridPos"`
	Datasource struct {
		UID string `json:"uid"`
	} `json:"datasource"`
	Targets []struct {
		RefID      string `json:"refId"`
		Expr       string `json:"expr"`
		Datasource struct {
			UID string `json:"uid"`
		} `json:"datasource"`
	} `json:"targets"`
}

// TestDashboardShape checks what an operator relies on: a datasource and
// a multi-select node variable with All, every query scoped to the chosen
// nodes and reading only documented series, panels that do not overlap,
// unique ids, and JSON the SDK reads back.
func TestDashboardShape(t *testing.T) {
	b, err := os.ReadFile(committed)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		UID        string      `json:"uid"`
		Panels     []panelJSON `json:"panels"`
		Templating struct {
			List []struct {
				Type, Name, Query string
				Multi, IncludeAll bool
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	if d.UID != UID {
		t.Errorf("uid %q", d.UID)
	}
	vars := map[string]bool{}
	for _, v := range d.Templating.List {
		vars[v.Name] = true
		if v.Name == "node" && (!v.Multi || !v.IncludeAll || !strings.Contains(v.Query, "shakenline_build_info")) {
			t.Errorf("node variable: %+v", v)
		}
	}
	if !vars["node"] || !vars["datasource"] {
		t.Errorf("variables %v, want datasource and node", vars)
	}
	doc, err := os.ReadFile("../../docs/METRICS.md")
	if err != nil {
		t.Fatal(err)
	}
	series := regexp.MustCompile(`\b(?:shakenline|process|go)_[a-z0-9_]+`)
	selector := regexp.MustCompile(`\b(?:shakenline|process|go)_[a-z0-9_]+(\{[^}]*\})?`)
	ids := map[int]bool{}
	var grid [200][24]bool
	panels, queries := 0, 0
	for _, p := range d.Panels {
		if ids[p.ID] || p.ID == 0 {
			t.Errorf("panel %q: id %d missing or reused", p.Title, p.ID)
		}
		ids[p.ID] = true
		if p.GridPos.X+p.GridPos.W > 24 || p.GridPos.W == 0 || p.GridPos.H == 0 {
			t.Errorf("panel %q: gridPos %+v", p.Title, p.GridPos)
		}
		for y := p.GridPos.Y; y < p.GridPos.Y+p.GridPos.H && y < len(grid); y++ {
			for x := p.GridPos.X; x < p.GridPos.X+p.GridPos.W && x < 24; x++ {
				if grid[y][x] {
					t.Errorf("panel %q overlaps another at %d,%d", p.Title, x, y)
				}
				grid[y][x] = true
			}
		}
		if p.Type == "row" {
			continue
		}
		panels++
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		if p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q: datasource %q", p.Title, p.Datasource.UID)
		}
		for _, q := range p.Targets {
			queries++
			if q.RefID == "" || q.Datasource.UID != "${datasource}" {
				t.Errorf("panel %q: query %q without refId or datasource variable", p.Title, q.Expr)
			}
			for _, sm := range selector.FindAllStringSubmatch(q.Expr, -1) {
				if !strings.Contains(sm[1], `instance=~"$node"`) {
					t.Errorf("panel %q: %q is not scoped to $node", p.Title, sm[0])
				}
			}
			for _, s := range series.FindAllString(q.Expr, -1) {
				base := strings.TrimSuffix(s, "_le_bucket")
				if !bytes.Contains(doc, []byte("`"+base+"`")) && !bytes.Contains(doc, []byte(base+"`")) {
					t.Errorf("panel %q reads %s, which docs/METRICS.md does not list", p.Title, s)
				}
			}
		}
	}
	if panels < 30 || queries < 50 {
		t.Errorf("%d panels, %d queries: the dashboard lost content", panels, queries)
	}
	plugins.RegisterDefaultPlugins()
	var sdk dashboard.Dashboard
	if err := json.Unmarshal(b, &sdk); err != nil {
		t.Fatalf("the SDK does not read the dashboard back: %v", err)
	}
}
