module github.com/btrfs-vdo/btrfs-vdo

go 1.23.0

require golang.org/x/sys v0.35.0

require (
	github.com/BurntSushi/toml v1.6.0
	github.com/cespare/xxhash/v2 v2.3.0
	github.com/coreos/go-systemd/v22 v22.7.0
	github.com/godbus/dbus/v5 v5.2.4
	github.com/hanwen/go-fuse/v2 v2.11.0
	github.com/klauspost/compress v1.18.2
	github.com/schollz/progressbar/v3 v3.18.0
	golang.org/x/term v0.34.0
)

require (
	github.com/mitchellh/colorstring v0.0.0-20190213212951-d06e56a500db // indirect
	github.com/rivo/uniseg v0.4.7 // indirect
)
