// SPDX-License-Identifier: GPL-2.0-or-later

package bus

import (
	"errors"
	"fmt"
	"reflect"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/godbus/dbus/v5/introspect"
	"github.com/godbus/dbus/v5/prop"
)

// The daemon's name, object and interface on the system bus; the 1 is the
// interface's version.
const (
	Name      = "org.qubes_os.BtrfsVdo1"
	Path      = dbus.ObjectPath("/org/qubes_os/BtrfsVdo1")
	Interface = "org.qubes_os.BtrfsVdo1"
)

// Status is what the daemon reports on the bus.
type Status struct {
	Pools       []PoolStatus
	JobsQueued  uint32
	JobsRunning uint32
}

// PoolStatus is one pool's line in the Pools property, a(sstt).
type PoolStatus struct {
	Name       string
	DirPath    string
	Commits    uint64
	BytesSaved uint64
}

// StatusSource gives the current status; the daemon implements it over
// its pool registry.
type StatusSource interface {
	Status() Status
}

// changedInterval is the shortest time between two PropertiesChanged
// signals: a burst of changes (a commit queueing a job that starts at
// once) is sent as one.
const changedInterval = 250 * time.Millisecond

// Service is the daemon's object on the bus.
type Service struct {
	conn    *dbus.Conn
	props   statusProps
	changed chan struct{} // a change to look for; buffered, never blocks
}

// properties in Interface, with their D-Bus types.
var properties = []introspect.Property{
	{Name: "Version", Type: "s"},
	{Name: "Pools", Type: "a(sstt)"},
	{Name: "Commits", Type: "t"},
	{Name: "BytesSaved", Type: "t"},
	{Name: "JobsQueued", Type: "u"},
	{Name: "JobsRunning", Type: "u"},
}

// Export publishes the status object on conn and takes the name. It fails
// if another peer owns the name or the bus policy refuses it (the policy
// file dbus/org.qubes_os.BtrfsVdo1.conf is not installed).
func Export(conn *dbus.Conn, version string, src StatusSource) (*Service, error) {
	props := statusProps{version: version, src: src}
	if err := conn.Export(props, Path, "org.freedesktop.DBus.Properties"); err != nil {
		return nil, fmt.Errorf("export %s: %w", Path, err)
	}
	if err := conn.Export(introspect.NewIntrospectable(introspection()), Path, "org.freedesktop.DBus.Introspectable"); err != nil {
		return nil, fmt.Errorf("export %s: %w", Path, err)
	}
	reply, err := conn.RequestName(Name, dbus.NameFlagDoNotQueue)
	if err == nil && reply != dbus.RequestNameReplyPrimaryOwner {
		err = errors.New("another peer owns it")
	}
	if err != nil {
		return nil, fmt.Errorf("own %s: %w", Name, err)
	}
	svc := &Service{conn: conn, props: props, changed: make(chan struct{}, 1)}
	go svc.emitChanges(conn.Context().Done())
	return svc, nil
}

// Changed tells the service that the status may have changed. It never
// waits: the properties are read again and what differs is sent with
// PropertiesChanged, at most once per changedInterval.
func (s *Service) Changed() {
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// emitChanges sends PropertiesChanged with the properties that differ
// from those last sent, until done (the connection closes).
func (s *Service) emitChanges(done <-chan struct{}) {
	last := s.props.values()
	var sent time.Time
	for {
		select {
		case <-done:
			return
		case <-s.changed:
		}
		if wait := changedInterval - time.Since(sent); wait > 0 {
			select {
			case <-done:
				return
			case <-time.After(wait):
			}
		}
		// What changed while waiting is in the values read next.
		select {
		case <-s.changed:
		default:
		}
		now := s.props.values()
		diff := map[string]dbus.Variant{}
		for name, v := range now {
			if !reflect.DeepEqual(v.Value(), last[name].Value()) {
				diff[name] = v
			}
		}
		if len(diff) == 0 {
			continue
		}
		// A failure means the connection is going: done follows.
		_ = s.conn.Emit(Path, propChanged, Interface, diff, []string{})
		last, sent = now, time.Now()
	}
}

// JobFinished announces that a background job on vid ended, having saved
// bytesSaved bytes.
func (s *Service) JobFinished(vid string, bytesSaved uint64) error {
	if err := s.conn.Emit(Path, Interface+".JobFinished", vid, bytesSaved); err != nil {
		return fmt.Errorf("emit JobFinished: %w", err)
	}
	return nil
}

func introspection() *introspect.Node {
	props := make([]introspect.Property, len(properties))
	for i, p := range properties {
		p.Access = "read"
		emits := "true" // PropertiesChanged carries the new value
		if p.Name == "Version" {
			emits = "const"
		}
		p.Annotations = []introspect.Annotation{{Name: "org.freedesktop.DBus.Property.EmitsChangedSignal", Value: emits}}
		props[i] = p
	}
	return &introspect.Node{
		Name: string(Path),
		Interfaces: []introspect.Interface{
			introspect.IntrospectData,
			prop.IntrospectData,
			{
				Name:       Interface,
				Properties: props,
				Signals: []introspect.Signal{{Name: "JobFinished", Args: []introspect.Arg{
					{Name: "vid", Type: "s"}, {Name: "bytes_saved", Type: "t"},
				}}},
			},
		},
	}
}

// statusProps implements org.freedesktop.DBus.Properties by asking the
// source on every read. godbus's prop package keeps a copy of each value
// that the daemon would have to refresh on every change; asking is simpler
// and never stale, and Changed compares with what was last sent.
type statusProps struct {
	version string
	src     StatusSource
}

func (p statusProps) Get(iface, name string) (dbus.Variant, *dbus.Error) {
	all, err := p.GetAll(iface)
	if err != nil {
		return dbus.Variant{}, err
	}
	v, ok := all[name]
	if !ok {
		return dbus.Variant{}, dbus.NewError("org.freedesktop.DBus.Error.UnknownProperty", []any{"no property " + name})
	}
	return v, nil
}

func (p statusProps) GetAll(iface string) (map[string]dbus.Variant, *dbus.Error) {
	if iface != Interface {
		return nil, dbus.NewError("org.freedesktop.DBus.Error.UnknownInterface", []any{"no interface " + iface})
	}
	return p.values(), nil
}

// values reads every property of Interface from the source.
func (p statusProps) values() map[string]dbus.Variant {
	st := p.src.Status()
	var commits, saved uint64
	for _, pool := range st.Pools {
		commits += pool.Commits
		saved += pool.BytesSaved
	}
	return map[string]dbus.Variant{
		"Version":     dbus.MakeVariant(p.version),
		"Pools":       dbus.MakeVariant(st.Pools),
		"Commits":     dbus.MakeVariant(commits),
		"BytesSaved":  dbus.MakeVariant(saved),
		"JobsQueued":  dbus.MakeVariant(st.JobsQueued),
		"JobsRunning": dbus.MakeVariant(st.JobsRunning),
	}
}

func (p statusProps) Set(iface, name string, _ dbus.Variant) *dbus.Error {
	return dbus.NewError("org.freedesktop.DBus.Error.PropertyReadOnly", []any{name + " is read-only"})
}
