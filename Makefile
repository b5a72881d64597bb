# SPDX-License-Identifier: GPL-2.0-or-later
# btrfs-vdo: see README.md. Every target that runs anything installs what it
# needs first (scripts/install-deps).

PREFIX     ?= /usr
BINDIR     ?= $(PREFIX)/bin
UNITDIR    ?= $(PREFIX)/lib/systemd/system
DOCDIR     ?= $(PREFIX)/share/doc/btrfs-vdo
DBUSDIR    ?= $(PREFIX)/share/dbus-1/system.d
MANDIR     ?= $(PREFIX)/share/man
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
PYTHON     ?= python3
PYTHONDIR  ?= $(shell $(PYTHON) -c 'import sysconfig; print(sysconfig.get_path("purelib", vars={"base": "$(PREFIX)"}))')
# The files version and rel are the ones qubes-builder reads.
VERSION    := $(shell head -n 1 version)
RELEASE    := $(shell head -n 1 rel)
GO_LDFLAGS := -X github.com/btrfs-vdo/btrfs-vdo/internal/version.Version=$(VERSION)
DIST       := btrfs-vdo-$(VERSION)
RPMDIR     ?= $(CURDIR)/build/rpm
# The mtime of every file in the dist tarball: the last commit's time.
DIST_MTIME  = $(shell git log -1 --format=%ct)
# The prerequisite that installs build and test tools; the RPM build sets
# it empty, as a package build must not run apt-get.
DEPS       ?= deps

# Tests that need root and btrfs fail instead of skipping under make test.
export BTRFS_VDO_REQUIRE_BTRFS = 1

# Building needs Go 1.23 or newer (go.mod's floor). Where go on PATH is
# missing or older (Debian 12's golang-go is 1.19), Debian's golang-1.23-go,
# which install-deps installs, comes first on PATH.
ifeq ($(shell GOTOOLCHAIN=local go env GOVERSION 2>/dev/null | grep -E '^go1\.(2[3-9]|[3-9][0-9])'),)
export PATH := /usr/lib/go-1.23/bin:$(PATH)
endif

.PHONY: all build deps test test-go test-go-min test-shim test-fuzz fuzz test-integration test-rpm vet demo bench-commit bench-compress bench-shutdown \
	bench-dedup bench-hash bench-soak bench-read \
	install shim-install uninstall spec dist rpm clean

all: build

deps:
	./scripts/install-deps

build: $(DEPS)
	go build -ldflags '$(GO_LDFLAGS)' -o bin/ ./cmd/...

vet: $(DEPS)
	go vet ./...
	test -z "$$(gofmt -l .)" || { gofmt -l .; echo 'gofmt: files above need formatting'; exit 1; }

test: vet build test-go test-go-min test-fuzz test-shim test-rpm test-integration test-powercut-sample

test-go: $(DEPS)
	go test -count=1 ./...

# The same with Go 1.23 itself, the oldest Go that must build the project
# (scripts/find-go 1.23 finds it: Debian's golang-1.23-go).
test-go-min: $(DEPS)
	go_min="$$(scripts/find-go 1.23)" && export GOTOOLCHAIN=local PATH="$$(dirname "$$go_min"):$$PATH" && \
	go version && go vet ./... && go build ./... && go test -count=1 ./...

test-shim:
	cd qubesd-shim && PYTHONPATH=../python-stub $(PYTHON) -m unittest discover -s tests -t .

# Fuzz targets, as package:Function. make test fuzzes each for 100000
# inputs (about 10 s here): a count, not a duration, since Go 1.26's fuzz
# coordinator can report "context deadline exceeded" as a failure when a
# -fuzztime duration ends mid-input (golang/go#75804). make fuzz runs each
# for FUZZTIME (default 5m). A failing input is saved under the package's
# testdata/fuzz/, where go test then replays it.
FUZZ_TARGETS := ./internal/server:FuzzDecodeRequest ./volume:FuzzValidateVID
fuzz-each = $(foreach t,$(FUZZ_TARGETS),go test -run='^$$' -fuzz='^$(word 2,$(subst :, ,$(t)))$$' \
	-fuzztime=$(1) $(word 1,$(subst :, ,$(t))) &&) true

test-fuzz: $(DEPS)
	$(call fuzz-each,100000x)

fuzz: $(DEPS)
	$(call fuzz-each,$(or $(FUZZTIME),5m))

# Each run makes its files under /var/tmp/<its own prefix>, and the trap
# undoes its mounts and loop devices even when the run is killed.
RUN_PREFIX = export BTRFS_VDO_RUN_PREFIX=btrfs-vdo-$$$$-; trap "./tests/cleanup $$BTRFS_VDO_RUN_PREFIX" EXIT INT TERM

test-integration: build
	$(RUN_PREFIX); \
	PYTHONPATH=.:python-stub:qubesd-shim BTRFS_VDO_BIN=$(CURDIR)/bin $(PYTHON) -m unittest discover -s tests -t . -v

demo: build
	./demo/run

# A VM's stop through the daemon against the file-reflink way, by the image's
# extent count (BENCH_ARGS="--help"; "--series rewritten": by data rewritten).
bench-commit: build
	$(RUN_PREFIX); \
	PYTHONPATH=.:python-stub:qubesd-shim BTRFS_VDO_BIN=$(CURDIR)/bin $(PYTHON) bench/commit/bench.py $(BENCH_ARGS)

# The benchmark undoes its own mounts, loop devices and daemon, also on ^C
# (BENCH_ARGS=-keep leaves the filesystems mounted; tests/cleanup undoes them).
bench-compress: build
	go run ./bench/compress -bin $(CURDIR)/bin $(BENCH_ARGS)

# btrfs-vdo against duperemove on the same corpus; cleans up the same way.
bench-dedup: build
	go run ./bench/dedup -bin $(CURDIR)/bin $(BENCH_ARGS)

# Hashing and dedup-index figures, in memory and under /tmp (no root needed).
bench-hash: $(DEPS)
	go run ./bench/hash $(BENCH_ARGS)

# Many VMs cycling through the shim while the optimizer runs; prints
# throughput, latencies and the daemon's memory (BENCH_ARGS="--help").
bench-soak: build
	$(RUN_PREFIX); \
	PYTHONPATH=.:python-stub:qubesd-shim BTRFS_VDO_BIN=$(CURDIR)/bin $(PYTHON) bench/soak/soak.py $(BENCH_ARGS)

# NOBUILD=1 installs the binaries already in bin/ (the RPM builds them
# with its own flags first).
install: $(if $(NOBUILD),,build)
	install -D -m 0755 bin/btrfs-vdod $(DESTDIR)$(BINDIR)/btrfs-vdod
	install -D -m 0755 bin/btrfs-vdo $(DESTDIR)$(BINDIR)/btrfs-vdo
	install -D -m 0644 systemd/btrfs-vdod.socket $(DESTDIR)$(UNITDIR)/btrfs-vdod.socket
	install -D -m 0644 systemd/btrfs-vdod.service $(DESTDIR)$(UNITDIR)/btrfs-vdod.service
	sed -i 's|^ExecStart=.*|ExecStart=$(BINDIR)/btrfs-vdod|' $(DESTDIR)$(UNITDIR)/btrfs-vdod.service
	install -D -m 0644 dbus/org.qubes_os.BtrfsVdo1.conf $(DESTDIR)$(DBUSDIR)/org.qubes_os.BtrfsVdo1.conf
	install -D -m 0644 README.md $(DESTDIR)$(DOCDIR)/README.md
	install -D -m 0644 packaging/config.toml $(DESTDIR)$(DOCDIR)/config.toml
	install -D -m 0644 -t $(DESTDIR)$(MANDIR)/man8 docs/man/btrfs-vdo.8 docs/man/btrfs-vdod.8
	install -D -m 0644 -t $(DESTDIR)$(MANDIR)/man5 docs/man/btrfs-vdo.toml.5
	install -D -m 0644 packaging/btrfs-vdo.bash-completion $(DESTDIR)$(BASHCOMPDIR)/btrfs-vdo
	$(MAKE) shim-install PYTHONDIR='$(PYTHONDIR)'

shim-install:
	$(PYTHON) qubesd-shim/install.py --target '$(DESTDIR)$(PYTHONDIR)'

# Removes what install put, and only that: directories shared with other
# packages stay.
uninstall:
	rm -f $(DESTDIR)$(BINDIR)/btrfs-vdod $(DESTDIR)$(BINDIR)/btrfs-vdo \
		$(DESTDIR)$(UNITDIR)/btrfs-vdod.socket $(DESTDIR)$(UNITDIR)/btrfs-vdod.service \
		$(DESTDIR)$(DBUSDIR)/org.qubes_os.BtrfsVdo1.conf \
		$(DESTDIR)$(DOCDIR)/README.md $(DESTDIR)$(DOCDIR)/config.toml \
		$(DESTDIR)$(MANDIR)/man8/btrfs-vdo.8 $(DESTDIR)$(MANDIR)/man8/btrfs-vdod.8 \
		$(DESTDIR)$(MANDIR)/man5/btrfs-vdo.toml.5 $(DESTDIR)$(BASHCOMPDIR)/btrfs-vdo
	if [ -d $(DESTDIR)$(DOCDIR) ]; then rmdir --ignore-fail-on-non-empty $(DESTDIR)$(DOCDIR); fi
	$(PYTHON) qubesd-shim/install.py --uninstall --target '$(DESTDIR)$(PYTHONDIR)'

# The spec, made from rpm_spec/btrfs-vdo.spec.in as qubes-builder makes it:
# @VERSION@ and @REL@ become the first lines of version and rel.
spec:
	sed -e 's|@VERSION@|$(VERSION)|g' -e 's|@REL@|$(RELEASE)|g' rpm_spec/btrfs-vdo.spec.in >rpm_spec/btrfs-vdo.spec

# The source tarball: every file git tracks or would track (so it can be
# made before a commit; files deleted since are skipped), vendor/ included,
# and the spec, so that rpmbuild -tb builds it without network.
# Reproducible: sorted, owned by 0:0, modes from the permission bits only,
# every mtime the last commit's, gzip without name or time stamp.
dist: spec
	mkdir -p build
	{ git ls-files -z --cached --others --exclude-standard; printf 'rpm_spec/btrfs-vdo.spec\0'; } | \
		LC_ALL=C sort -z -u | \
		tar --null -T - --ignore-failed-read --warning=no-failed-read --format=gnu \
		--owner=0 --group=0 --numeric-owner --mode=go=rX,u+rw --mtime=@$(DIST_MTIME) \
		--transform 's,^,$(DIST)/,' -cf - | gzip -9 -n >build/$(DIST).tar.gz
	@echo build/$(DIST).tar.gz

# Built from the dist tarball alone, as a distribution would, into
# RPMDIR/RPMS. --nodeps: the build tools come from install-deps, not from
# packages rpm knows about (on Debian, rpm's database is empty).
rpm: dist
	./scripts/install-deps rpm
	rpmbuild -tb --nodeps --define '_topdir $(RPMDIR)' build/$(DIST).tar.gz

# Proves make rpm needs no network and no Go module cache, and checks both
# packages (tests/rpm_offline.py; not in test-integration's discovery).
test-rpm:
	./scripts/install-deps test-rpm
	$(PYTHON) -m unittest -v tests.rpm_offline

clean:
	rm -rf bin build rpm_spec/btrfs-vdo.spec

# Read speed of an optimized pool against raw and compress=zstd copies of
# the corpus on direct-I/O loop devices; cleans up as bench-compress does.
bench-read: build
	go run ./bench/read -bin $(CURDIR)/bin $(BENCH_ARGS)

# Many VMs stopping at once: all their jobs against one VM's job, and the
# transaction commits the jobs made (BENCH_ARGS="-vms 20 -size-mib 128").
bench-shutdown: $(DEPS)
	$(RUN_PREFIX); go run ./bench/shutdown $(BENCH_ARGS)

# Power loss at every flush (tests/powercut.py): the pool's btrfs sits on a
# FUSE disk whose unflushed writes a power cut drops. The disk is a test
# tool, built under build/ and never installed. test-powercut-sample checks
# a few random crash states of each operation (about a minute; the seed is
# printed, POWERCUT_ARGS="--seed N" repeats it); powercut checks them all.
.PHONY: powercut-disk test-powercut-sample powercut
powercut-disk: $(DEPS)
	go build -o build/powercut-disk ./tests/powercut-disk

POWERCUT = $(RUN_PREFIX); PYTHONPATH=.:python-stub:qubesd-shim BTRFS_VDO_BIN=$(CURDIR)/bin \
	POWERCUT_DISK=$(CURDIR)/build/powercut-disk $(PYTHON) -m tests.powercut

test-powercut-sample: build powercut-disk
	$(POWERCUT) --sample 2 $(POWERCUT_ARGS)

powercut: build powercut-disk
	$(POWERCUT) $(POWERCUT_ARGS)
