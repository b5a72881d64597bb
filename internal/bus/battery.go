// SPDX-License-Identifier: GPL-2.0-or-later

package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"

	"github.com/godbus/dbus/v5"
)

// Pauser is what WatchBattery pauses: the pool's job scheduler. Resume
// lifts the pause of the same reason only; others may hold theirs.
type Pauser interface {
	Pause(reason string)
	Resume(reason string)
}

// batteryReason is the reason WatchBattery pauses for.
const batteryReason = "on battery"

const (
	upowerName  = "org.freedesktop.UPower"
	upowerPath  = dbus.ObjectPath("/org/freedesktop/UPower")
	propsIface  = "org.freedesktop.DBus.Properties"
	propChanged = propsIface + ".PropertiesChanged"
	ownerChange = "org.freedesktop.DBus.NameOwnerChanged"
)

// WatchBattery pauses p while UPower reports the machine on battery and
// resumes it when it is back on AC, until ctx is done. Without UPower
// the machine counts as on AC. It returns an error if it cannot subscribe
// to the signals or loses the connection, resuming p if it paused it.
func WatchBattery(ctx context.Context, conn *dbus.Conn, log *slog.Logger, p Pauser) error {
	// The sender match keeps other peers from pausing the jobs with a
	// forged signal.
	rules := [][]dbus.MatchOption{
		{dbus.WithMatchSender(upowerName), dbus.WithMatchObjectPath(upowerPath),
			dbus.WithMatchInterface(propsIface), dbus.WithMatchMember("PropertiesChanged")},
		{dbus.WithMatchSender("org.freedesktop.DBus"), dbus.WithMatchMember("NameOwnerChanged"),
			dbus.WithMatchArg(0, upowerName)},
	}
	for _, rule := range rules {
		if err := conn.AddMatchSignalContext(ctx, rule...); err != nil {
			return fmt.Errorf("watch UPower: %w", err)
		}
	}
	signals := make(chan *dbus.Signal, 16)
	conn.Signal(signals)
	defer conn.RemoveSignal(signals)

	w := battery{log: log, p: p}
	// Jobs paused by this watch must not stay paused once it ends (the
	// bus went away): a later watch starts from "on AC".
	defer w.set(false)
	w.set(readOnBattery(ctx, conn, log))
	for {
		select {
		case <-ctx.Done():
			return nil
		case sig, ok := <-signals:
			if !ok {
				return errors.New("watch UPower: the bus connection closed")
			}
			switch {
			case sig.Name == propChanged && sig.Path == upowerPath:
				switch v, change := onBatteryChange(sig.Body); change {
				case changedTo:
					w.set(v)
				case changedUnknown:
					w.set(readOnBattery(ctx, conn, log))
				}
			case sig.Name == ownerChange && len(sig.Body) == 3 && sig.Body[0] == upowerName:
				w.set(readOnBattery(ctx, conn, log))
			}
		}
	}
}

// battery remembers the last state so p sees only changes.
type battery struct {
	log       *slog.Logger
	p         Pauser
	onBattery bool
}

func (b *battery) set(onBattery bool) {
	if onBattery == b.onBattery {
		return
	}
	b.onBattery = onBattery
	b.log.Debug("power source changed", "on_battery", onBattery)
	if onBattery {
		b.p.Pause(batteryReason)
	} else {
		b.p.Resume(batteryReason)
	}
}

// readOnBattery asks UPower; false when it cannot tell.
func readOnBattery(ctx context.Context, conn *dbus.Conn, log *slog.Logger) bool {
	var onBattery bool
	err := conn.Object(upowerName, upowerPath).CallWithContext(ctx, propsIface+".Get", 0,
		upowerName, "OnBattery").Store(&onBattery)
	if err != nil {
		log.Debug("UPower does not answer; counting as on AC", "err", err)
		return false
	}
	return onBattery
}

type change int

const (
	unchanged      change = iota
	changedTo             // the signal carries the new value
	changedUnknown        // the signal says only that the value changed
)

// onBatteryChange reads a PropertiesChanged body from UPower.
func onBatteryChange(body []any) (onBattery bool, c change) {
	if len(body) != 3 || body[0] != upowerName {
		return false, unchanged
	}
	changed, _ := body[1].(map[string]dbus.Variant)
	if v, ok := changed["OnBattery"]; ok {
		onBattery, ok = v.Value().(bool)
		if ok {
			return onBattery, changedTo
		}
		return false, changedUnknown
	}
	invalidated, _ := body[2].([]string)
	if slices.Contains(invalidated, "OnBattery") {
		return false, changedUnknown
	}
	return false, unchanged
}
