// SPDX-License-Identifier: GPL-2.0-or-later

package bustest

import (
	"testing"

	"github.com/godbus/dbus/v5"
	"github.com/godbus/dbus/v5/prop"
)

// UPower stands in for upowerd's OnBattery property. Changing it emits
// PropertiesChanged, as upowerd does.
type UPower struct {
	props *prop.Properties
}

// NewUPower serves org.freedesktop.UPower on conn, starting with onBattery.
func NewUPower(t testing.TB, conn *dbus.Conn, onBattery bool) *UPower {
	t.Helper()
	props, err := prop.Export(conn, "/org/freedesktop/UPower", prop.Map{
		"org.freedesktop.UPower": {"OnBattery": {Value: onBattery, Emit: prop.EmitTrue}},
	})
	if err != nil {
		t.Fatal(err)
	}
	own(t, conn, "org.freedesktop.UPower")
	return &UPower{props: props}
}

// SetOnBattery changes OnBattery and tells the bus.
func (u *UPower) SetOnBattery(onBattery bool) {
	u.props.SetMust("org.freedesktop.UPower", "OnBattery", onBattery)
}
