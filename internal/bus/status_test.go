// SPDX-License-Identifier: GPL-2.0-or-later

package bus_test

import (
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/godbus/dbus/v5/introspect"

	"github.com/btrfs-vdo/btrfs-vdo/internal/bus"
	"github.com/btrfs-vdo/btrfs-vdo/internal/bus/bustest"
)

const policyFile = "../../dbus/org.qubes_os.BtrfsVdo1.conf"

type source bus.Status

func (s source) Status() bus.Status { return bus.Status(s) }

var twoPools = source{
	Pools: []bus.PoolStatus{
		{Name: "vdo", DirPath: "/var/lib/qubes-vdo", Commits: 3, BytesSaved: 1 << 20},
		{Name: "fast", DirPath: "/mnt/fast", Commits: 2, BytesSaved: 5},
	},
	JobsQueued: 4, JobsRunning: 1,
}

// command runs name with args, as user nobody when asNobody is set.
func command(t *testing.T, asNobody bool, name string, args ...string) (string, error) {
	t.Helper()
	if asNobody {
		args = append([]string{"--reuid=65534", "--regid=65534", "--clear-groups", name}, args...)
		name = "setpriv"
	}
	out, err := exec.Command(name, args...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

func getProperty(t *testing.T, b *bustest.Bus, asNobody bool, name string) (string, error) {
	t.Helper()
	return command(t, asNobody, "busctl", "--address="+b.Address, "get-property", bus.Name, string(bus.Path), bus.Interface, name)
}

func TestStatusProperties(t *testing.T) {
	b := bustest.Start(t)
	if _, err := bus.Export(b.Conn(t), "1.2.3", twoPools); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ property, want string }{
		{"Version", `s "1.2.3"`},
		{"Pools", `a(sstt) 2 "vdo" "/var/lib/qubes-vdo" 3 1048576 "fast" "/mnt/fast" 2 5`},
		{"Commits", "t 5"},
		{"BytesSaved", "t 1048581"},
		{"JobsQueued", "u 4"},
		{"JobsRunning", "u 1"},
	}
	for _, tt := range tests {
		t.Run(tt.property, func(t *testing.T) {
			got, err := getProperty(t, b, false, tt.property)
			if err != nil || got != tt.want {
				t.Fatalf("busctl get-property %s: %q, %v; want %q", tt.property, got, err, tt.want)
			}
		})
	}
	t.Run("introspection", func(t *testing.T) {
		node, err := introspect.Call(b.Conn(t).Object(bus.Name, bus.Path))
		if err != nil {
			t.Fatal(err)
		}
		i := slices.IndexFunc(node.Interfaces, func(i introspect.Interface) bool { return i.Name == bus.Interface })
		if i < 0 {
			t.Fatalf("introspection lacks %s", bus.Interface)
		}
		iface := node.Interfaces[i]
		if len(iface.Properties) != len(tests) {
			t.Errorf("introspection lists %d properties, want %d", len(iface.Properties), len(tests))
		}
		for _, p := range iface.Properties {
			j := slices.IndexFunc(tests, func(tt struct{ property, want string }) bool { return tt.property == p.Name })
			if j < 0 || !strings.HasPrefix(tests[j].want, p.Type+" ") || p.Access != "read" {
				t.Errorf("introspected property %s %s %s does not match the values read", p.Access, p.Type, p.Name)
			}
			emits := "true"
			if p.Name == "Version" {
				emits = "const"
			}
			if len(p.Annotations) != 1 || p.Annotations[0].Value != emits {
				t.Errorf("property %s annotated %+v, want EmitsChangedSignal %s", p.Name, p.Annotations, emits)
			}
		}
		if len(iface.Signals) != 1 || iface.Signals[0].Name != "JobFinished" {
			t.Errorf("signals %+v, want JobFinished", iface.Signals)
		}
	})
	t.Run("dbus-send GetAll", func(t *testing.T) {
		out, err := command(t, false, "dbus-send", "--bus="+b.Address, "--print-reply", "--dest="+bus.Name,
			string(bus.Path), "org.freedesktop.DBus.Properties.GetAll", "string:"+bus.Interface)
		if err != nil || !strings.Contains(out, `string "JobsQueued"`) || !strings.Contains(out, "uint32 4") {
			t.Fatalf("dbus-send GetAll: %v\n%s", err, out)
		}
	})
	t.Run("read-only", func(t *testing.T) {
		out, err := command(t, false, "busctl", "--address="+b.Address, "set-property", bus.Name, string(bus.Path), bus.Interface, "JobsQueued", "u", "0")
		if err == nil || !strings.Contains(out, "read-only") {
			t.Fatalf("set-property: %v, %q; want a read-only error", err, out)
		}
	})
}

func TestJobFinishedSignal(t *testing.T) {
	b := bustest.Start(t)
	svc, err := bus.Export(b.Conn(t), "1.2.3", source{})
	if err != nil {
		t.Fatal(err)
	}
	listener := b.Conn(t)
	if err := listener.AddMatchSignal(dbus.WithMatchInterface(bus.Interface), dbus.WithMatchMember("JobFinished")); err != nil {
		t.Fatal(err)
	}
	signals := make(chan *dbus.Signal, 1)
	listener.Signal(signals)
	if err := svc.JobFinished("appvms/work/private", 4096); err != nil {
		t.Fatal(err)
	}
	select {
	case sig := <-signals:
		if sig.Path != bus.Path || !slices.Equal(sig.Body, []any{"appvms/work/private", uint64(4096)}) {
			t.Fatalf("signal %s %v", sig.Path, sig.Body)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no JobFinished signal")
	}
}

// The shipped policy file on a bus with the system bus's defaults: root
// owns the name, anyone reads, nobody else owns or writes.
func TestPolicyFile(t *testing.T) {
	t.Run("without it the name is refused", func(t *testing.T) {
		b := bustest.StartSystem(t)
		if _, err := bus.Export(b.Conn(t), "1.2.3", twoPools); err == nil || !strings.Contains(err.Error(), "own "+bus.Name) {
			t.Fatalf("Export without the policy file: %v, want refused", err)
		}
	})
	b := bustest.StartSystem(t, policyFile)
	out, err := command(t, true, "busctl", "--address="+b.Address, "call", "org.freedesktop.DBus", "/org/freedesktop/DBus",
		"org.freedesktop.DBus", "RequestName", "su", bus.Name, "4")
	if err == nil || !strings.Contains(out, "denied") {
		t.Errorf("nobody owning %s: %v, %q; want access denied", bus.Name, err, out)
	}
	if _, err := bus.Export(b.Conn(t), "1.2.3", twoPools); err != nil {
		t.Fatalf("root: %v", err)
	}
	if got, err := getProperty(t, b, true, "Commits"); err != nil || got != "t 5" {
		t.Errorf("nobody reading Commits: %q, %v", got, err)
	}
	out, err = command(t, true, "busctl", "--address="+b.Address, "set-property", bus.Name, string(bus.Path), bus.Interface, "JobsQueued", "u", "0")
	if err == nil || !strings.Contains(out, "denied") {
		t.Errorf("nobody setting a property: %v, %q; want access denied", err, out)
	}
}

// mutableSource is a status that changes under the test's hand.
type mutableSource struct {
	mu sync.Mutex
	st bus.Status
}

func (s *mutableSource) Status() bus.Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st
}

func (s *mutableSource) set(fn func(*bus.Status)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fn(&s.st)
}

// propertiesChanged subscribes conn to the status object's
// PropertiesChanged.
func propertiesChanged(t *testing.T, conn *dbus.Conn) chan *dbus.Signal {
	t.Helper()
	if err := conn.AddMatchSignal(dbus.WithMatchObjectPath(bus.Path),
		dbus.WithMatchInterface("org.freedesktop.DBus.Properties"), dbus.WithMatchMember("PropertiesChanged")); err != nil {
		t.Fatal(err)
	}
	signals := make(chan *dbus.Signal, 64)
	conn.Signal(signals)
	return signals
}

// A change is sent with the properties that changed and their values; a
// burst of changes is sent as one signal, and no change sends none.
func TestPropertiesChanged(t *testing.T) {
	b := bustest.Start(t)
	src := &mutableSource{}
	svc, err := bus.Export(b.Conn(t), "1.2.3", src)
	if err != nil {
		t.Fatal(err)
	}
	signals := propertiesChanged(t, b.Conn(t))

	src.set(func(st *bus.Status) { st.JobsQueued = 1 })
	svc.Changed()
	sig := waitSignal(t, signals)
	if len(sig.Body) != 3 || sig.Body[0] != bus.Interface {
		t.Fatalf("PropertiesChanged body %v", sig.Body)
	}
	changed := sig.Body[1].(map[string]dbus.Variant)
	if len(changed) != 1 || changed["JobsQueued"].Value() != uint32(1) {
		t.Fatalf("changed %v, want JobsQueued 1 alone", changed)
	}

	// A burst: 50 changes within 100 ms.
	began := time.Now()
	for i := range 50 {
		src.set(func(st *bus.Status) {
			st.JobsQueued = 0
			st.JobsRunning = 1
			st.Pools = []bus.PoolStatus{{Name: "vdo", DirPath: "/vdo", Commits: uint64(i + 1), BytesSaved: 4096}}
		})
		svc.Changed()
		time.Sleep(2 * time.Millisecond)
	}
	var last map[string]dbus.Variant
	count := 0
	for deadline := time.After(time.Second); ; {
		select {
		case sig := <-signals:
			count++
			last = sig.Body[1].(map[string]dbus.Variant)
			continue
		case <-deadline:
		}
		break
	}
	if elapsed := time.Since(began); count < 1 || count > int(elapsed/(200*time.Millisecond))+1 {
		t.Errorf("%d signals for 50 changes in %s, want a few per second at most", count, elapsed)
	}
	if last["Commits"].Value() != uint64(50) || last["BytesSaved"].Value() != uint64(4096) {
		t.Errorf("last signal %v, want the final Commits 50 and BytesSaved", last)
	}

	svc.Changed() // nothing differs
	select {
	case sig := <-signals:
		t.Errorf("a signal without a change: %v", sig.Body)
	case <-time.After(time.Second):
	}
}

func waitSignal(t *testing.T, signals chan *dbus.Signal) *dbus.Signal {
	t.Helper()
	select {
	case sig := <-signals:
		return sig
	case <-time.After(5 * time.Second):
		t.Fatal("no PropertiesChanged")
		return nil
	}
}
