# btrfs-vdo: see README.md. Every target that runs anything installs what it
# needs first (scripts/install-deps).

PREFIX     ?= /usr
BINDIR     ?= $(PREFIX)/bin
UNITDIR    ?= $(PREFIX)/lib/systemd/system
DOCDIR     ?= $(PREFIX)/share/doc/btrfs-vdo
PYTHON     ?= python3
PYTHONDIR  ?= $(shell $(PYTHON) -c 'import sysconfig; print(sysconfig.get_path("purelib", vars={"base": "$(PREFIX)"}))')
VERSION    := $(shell sed -n 's/^var Version = "\(.*\)"/\1/p' internal/version/version.go)
GO_LDFLAGS := -X github.com/btrfs-vdo/btrfs-vdo/internal/version.Version=$(VERSION)

# Tests that need root and btrfs fail instead of skipping under make test.
export BTRFS_VDO_REQUIRE_BTRFS = 1

.PHONY: all build deps test test-go test-shim test-integration vet demo bench-commit \
	install shim-install clean

all: build

deps:
	./scripts/install-deps

build: deps
	go build -ldflags '$(GO_LDFLAGS)' -o bin/ ./cmd/...

vet: deps
	go vet ./...
	test -z "$$(gofmt -l .)" || { gofmt -l .; echo 'gofmt: files above need formatting'; exit 1; }

test: vet build test-go test-shim test-integration

test-go: deps
	go test -count=1 ./...

test-shim:
	cd qubesd-shim && PYTHONPATH=../python-stub $(PYTHON) -m unittest discover -s tests -t .

# The trap undoes mounts and loop devices even when a test run is killed.
test-integration: build
	trap ./tests/cleanup EXIT INT TERM; \
	PYTHONPATH=.:python-stub:qubesd-shim BTRFS_VDO_BIN=$(CURDIR)/bin $(PYTHON) -m unittest discover -s tests -t . -v

demo: build
	./demo/run

bench-commit: build
	trap ./tests/cleanup EXIT INT TERM; \
	PYTHONPATH=.:python-stub:qubesd-shim BTRFS_VDO_BIN=$(CURDIR)/bin $(PYTHON) bench/commit/bench.py $(BENCH_ARGS)

install: build
	install -D -m 0755 bin/btrfs-vdod $(DESTDIR)$(BINDIR)/btrfs-vdod
	install -D -m 0755 bin/btrfs-vdo $(DESTDIR)$(BINDIR)/btrfs-vdo
	install -D -m 0644 systemd/btrfs-vdod.socket $(DESTDIR)$(UNITDIR)/btrfs-vdod.socket
	install -D -m 0644 systemd/btrfs-vdod.service $(DESTDIR)$(UNITDIR)/btrfs-vdod.service
	sed -i 's|^ExecStart=.*|ExecStart=$(BINDIR)/btrfs-vdod|' $(DESTDIR)$(UNITDIR)/btrfs-vdod.service
	install -D -m 0644 README.md $(DESTDIR)$(DOCDIR)/README.md
	$(MAKE) shim-install PYTHONDIR='$(PYTHONDIR)'

shim-install:
	$(PYTHON) qubesd-shim/install.py --target '$(DESTDIR)$(PYTHONDIR)'

clean:
	rm -rf bin build
