// SPDX-License-Identifier: GPL-2.0-or-later

// Command powercut-disk serves a store file as a FUSE file whose volatile
// write cache a power cut drops (internal/powercut), for the power-loss
// tests. It is a test tool: never installed.
//
//	powercut-disk -store FILE [-size BYTES] -mount DIR -control SOCKET [-keep-seed N]
//
// The device is DIR/disk. It runs until SIGTERM or SIGINT, then unmounts;
// whatever was not flushed by then is lost, as at a power cut.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/btrfs-vdo/btrfs-vdo/internal/powercut"
)

func main() {
	store := flag.String("store", "", "the durable store file")
	size := flag.Int64("size", 0, "make a new, empty store file of this many bytes")
	mnt := flag.String("mount", "", "the directory to mount the FUSE filesystem on")
	control := flag.String("control", "", "the Unix socket the test driver controls the device on")
	keepSeed := flag.Int64("keep-seed", 0, "at a cut, keep a random subset of the unflushed writes chosen by this seed (0: keep none)")
	flag.Parse()
	if *store == "" || *mnt == "" || *control == "" {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(*store, *size, *mnt, *control, *keepSeed); err != nil {
		log.Fatal(err)
	}
}

func run(storePath string, size int64, mnt, control string, keepSeed int64) error {
	store, err := openStore(storePath, size)
	if err != nil {
		return err
	}
	defer store.Close()
	dev, err := powercut.Open(store, keepSeed)
	if err != nil {
		return err
	}
	ln, err := net.Listen("unix", control)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", control, err)
	}
	defer ln.Close()
	server, err := powercut.Mount(mnt, dev)
	if err != nil {
		return err
	}
	go func() {
		if err := powercut.Control(ln, dev); err != nil {
			log.Print(err)
		}
	}()
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-stop
		if err := server.Unmount(); err != nil {
			log.Printf("unmount %s: %v", mnt, err)
		}
	}()
	server.Wait()
	s := dev.Status()
	log.Printf("stopped: %d flushes, cut %v, %d of %d unflushed writes kept", s.Flushes, s.Dead, s.Kept, s.Pending)
	return nil
}

// openStore opens the store, or makes a new sparse one when size > 0. A
// missing store is an error otherwise: a disk must not come back empty.
func openStore(path string, size int64) (*os.File, error) {
	if size <= 0 {
		store, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			return nil, fmt.Errorf("open store: %w", err)
		}
		return store, nil
	}
	store, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create store: %w", err)
	}
	if err := store.Truncate(size); err != nil {
		store.Close()
		return nil, fmt.Errorf("size store %s: %w", path, err)
	}
	return store, nil
}
