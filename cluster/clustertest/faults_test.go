package clustertest

import (
	"reflect"
	"testing"
	"time"
)

func TestPlan_SameSeedSameSchedule(t *testing.T) {
	cfg := PlanConfig{Nodes: 5, Kinds: AllFaults, Duration: 60 * time.Second}
	a, b := Plan(7, cfg), Plan(7, cfg)
	if len(a) < 5 || !reflect.DeepEqual(a, b) {
		t.Fatalf("seed 7 twice:\n%v\n%v", a, b)
	}
	if c := Plan(8, cfg); reflect.DeepEqual(a, c) {
		t.Errorf("seeds 7 and 8 gave the same schedule")
	}
}

func TestPlan_ShapeOfFaults(t *testing.T) {
	for _, n := range []int{3, 5} {
		faults := Plan(1, PlanConfig{Nodes: n, Kinds: AllFaults, Duration: 10 * time.Minute})
		var end time.Duration
		seen := map[FaultKind]bool{}
		for _, f := range faults {
			seen[f.Kind] = true
			if f.Start < end {
				t.Errorf("%v overlaps the previous fault (ends %v)", f, end)
			}
			end = f.Start + f.Dur
			if f.Dur < time.Second || f.Dur > 3*time.Second {
				t.Errorf("%v: duration", f)
			}
			switch f.Kind {
			case FaultKill, FaultPause:
				if len(f.Nodes) < 1 || len(f.Nodes) > (n-1)/2 {
					t.Errorf("n=%d %v: want a minority of nodes", n, f)
				}
			case FaultSplit, FaultOneWay:
				if len(f.Sides[0]) > (n-1)/2 || len(f.Sides[0])+len(f.Sides[1]) != n {
					t.Errorf("n=%d %v: want minority|majority over all nodes", n, f)
				}
			case FaultBridge:
				if len(f.Nodes) != 1 || len(f.Sides[0])+len(f.Sides[1]) != n-1 {
					t.Errorf("n=%d %v: want one bridge and two sides", n, f)
				}
			}
		}
		if len(seen) != len(AllFaults) {
			t.Errorf("n=%d: kinds drawn %v", n, seen)
		}
	}
}

func TestParseFaults(t *testing.T) {
	if k, err := ParseFaults("kill, pause"); err != nil || !reflect.DeepEqual(k, []FaultKind{FaultKill, FaultPause}) {
		t.Errorf("%v %v", k, err)
	}
	if _, err := ParseFaults("kill,meteor"); err == nil {
		t.Error("unknown kind accepted")
	}
}
