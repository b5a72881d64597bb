// SPDX-License-Identifier: GPL-2.0-or-later

package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/btrfs-vdo/btrfs-vdo/api"
)

// defaultReadTimeout bounds how long a client may take to send its
// request, so a slow or stuck client holds a goroutine and a descriptor
// only briefly.
const defaultReadTimeout = 30 * time.Second

// refusedReadTimeout bounds how long a refused peer's request is read.
const refusedReadTimeout = time.Second

// Server answers requests for the pools in its registry.
type Server struct {
	Pools   Registry
	Log     *slog.Logger
	Version string
	// AllowUID is the only peer uid served; qubesd runs as root.
	AllowUID uint32
	// Jobs is the optimizer's scheduler; nil (not a nil pointer) when
	// optimization is off.
	Jobs Scheduler
	// ReadTimeout overrides defaultReadTimeout when set.
	ReadTimeout time.Duration
	// StopTimeout bounds how long Serve waits for the requests in flight
	// once ctx is done; 0 waits for as long as they take.
	StopTimeout time.Duration
	// MaxConns bounds the connections served at once; 0 means
	// DefaultMaxConns.
	MaxConns int

	started time.Time
	// stopping is Serve's ctx, done when the daemon stops: work that may
	// wait on something outside the pool (an import's source) ends then.
	stopping context.Context
	requests atomic.Uint64
	conns    sync.WaitGroup
	inFlight atomic.Int64
}

// ErrStopTimeout is returned by Serve when requests were still running
// after StopTimeout.
var ErrStopTimeout = errors.New("gave up waiting for requests in flight")

// Serve accepts connections on ln until ctx is done, then waits for the
// requests in flight to finish: a commit is never cut short by a shutdown,
// unless it outlasts StopTimeout. It serves at most MaxConns connections
// at once, and rides out accept errors that pass (out of descriptors, say)
// with a growing pause; only a listener that is broken ends it early.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	s.started = time.Now()
	s.stopping = ctx
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	slots := newConnSlots(s.maxConns())
	atLimit := func() {
		s.Log.Warn("at the connection limit; new connections wait", "limit", cap(slots.free))
	}
	var backoff time.Duration
	for {
		if !slots.take(ctx, atLimit) {
			return s.drain()
		}
		conn, err := ln.Accept()
		if err != nil {
			slots.give()
			if ctx.Err() != nil {
				return s.drain()
			}
			if !temporaryAcceptError(err) {
				return fmt.Errorf("accept: %w", err)
			}
			backoff = nextBackoff(backoff)
			s.Log.Warn("accept failed; retrying", "err", err, "retry_in", backoff, "connections", s.inFlight.Load())
			if !sleep(ctx, backoff) {
				return s.drain()
			}
			continue
		}
		backoff = 0
		s.conns.Add(1)
		s.inFlight.Add(1)
		go func() {
			defer s.conns.Done()
			defer s.inFlight.Add(-1)
			defer slots.give()
			s.serveConn(conn)
		}()
	}
}

func (s *Server) maxConns() int {
	if s.MaxConns > 0 {
		return s.MaxConns
	}
	return DefaultMaxConns
}

// drain waits for the connections being served, for at most StopTimeout.
// Files are only ever replaced by rename, so exiting in the middle of a
// request leaves the old state or the new one.
func (s *Server) drain() error {
	n := s.inFlight.Load()
	if n == 0 {
		return nil
	}
	s.Log.Info("waiting for requests in flight", "requests", n, "timeout", s.StopTimeout)
	done := make(chan struct{})
	go func() {
		s.conns.Wait()
		close(done)
	}()
	var timeout <-chan time.Time
	if s.StopTimeout > 0 {
		timer := time.NewTimer(s.StopTimeout)
		defer timer.Stop()
		timeout = timer.C
	}
	select {
	case <-done:
		return nil
	case <-timeout:
		return fmt.Errorf("%w after %s (%d left)", ErrStopTimeout, s.StopTimeout, s.inFlight.Load())
	}
}

func (s *Server) serveConn(conn net.Conn) {
	defer conn.Close()
	resp := s.answer(conn)
	line, err := json.Marshal(resp)
	if err != nil {
		s.Log.Error("encode response", "err", err)
		return
	}
	if _, err := conn.Write(append(line, '\n')); err != nil {
		s.Log.Debug("write response", "err", err)
	}
}

// answer reads and runs one request and returns its response.
func (s *Server) answer(conn net.Conn) api.Response {
	if err := s.checkPeer(conn); err != nil {
		s.Log.Warn("refused client", "err", err)
		// Take the request (briefly, at most a frame) before answering: a
		// client still sending when the connection closes gets a broken
		// pipe, not this answer.
		_ = conn.SetReadDeadline(time.Now().Add(refusedReadTimeout))
		_, _ = readFrame(conn)
		return failure(&api.Error{Code: api.CodePermissionDenied, Message: err.Error()})
	}
	timeout := s.ReadTimeout
	if timeout == 0 {
		timeout = defaultReadTimeout
	}
	_ = conn.SetReadDeadline(time.Now().Add(timeout))
	frame, err := readFrame(conn)
	if err != nil {
		return failure(&api.Error{Code: api.CodeBadRequest, Message: err.Error()})
	}
	_ = conn.SetReadDeadline(time.Time{})
	s.requests.Add(1)
	req, apiErr := decodeRequest(frame)
	if apiErr != nil {
		return failure(apiErr)
	}
	began := time.Now()
	result, err := s.dispatch(req)
	if err != nil {
		e := toAPIError(err)
		s.Log.Warn("request failed", "op", req.Op, "code", e.Code, "err", e.Message)
		return failure(e)
	}
	s.Log.Debug("request done", "op", req.Op, "ms", time.Since(began).Milliseconds())
	raw, err := json.Marshal(result)
	if err != nil {
		return failure(&api.Error{Code: api.CodeInternal, Message: fmt.Sprintf("encode %s result: %v", req.Op, err)})
	}
	return api.Response{OK: true, Result: raw}
}

func (s *Server) checkPeer(conn net.Conn) error {
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		return errors.New("not a unix socket connection")
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return fmt.Errorf("peer credentials: %w", err)
	}
	var cred *unix.Ucred
	var credErr error
	err = raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	})
	if err == nil {
		err = credErr
	}
	if err != nil {
		return fmt.Errorf("peer credentials: %w", err)
	}
	if cred.Uid != s.AllowUID {
		return fmt.Errorf("peer uid %d (pid %d) is not allowed; only uid %d is served", cred.Uid, cred.Pid, s.AllowUID)
	}
	return nil
}

// readFrame reads one line of at most api.MaxFrameBytes.
func readFrame(conn net.Conn) ([]byte, error) {
	r := bufio.NewReaderSize(conn, 64*1024)
	var frame []byte
	for {
		chunk, err := r.ReadSlice('\n')
		frame = append(frame, chunk...)
		if len(frame) > api.MaxFrameBytes {
			return nil, fmt.Errorf("request exceeds %d bytes", api.MaxFrameBytes)
		}
		switch {
		case err == nil:
			return frame, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		default:
			return nil, fmt.Errorf("read request: %w", err)
		}
	}
}

func decodeRequest(frame []byte) (api.Request, *api.Error) {
	var req api.Request
	if err := decodeStrict(frame, &req); err != nil {
		return req, &api.Error{Code: api.CodeBadRequest, Message: "malformed request: " + err.Error()}
	}
	if req.V != api.ProtocolVersion {
		return req, &api.Error{Code: api.CodeUnsupportedProtocol, Message: fmt.Sprintf(
			"protocol version %d is not supported; this daemon speaks version %d", req.V, api.ProtocolVersion)}
	}
	return req, nil
}

// decodeStrict decodes the one JSON value in data into v, refusing
// duplicate keys, keys that match a field only case-insensitively (see
// checkKeys), unknown fields and trailing data.
func decodeStrict(data []byte, v any) error {
	if err := checkKeys(data, reflect.TypeOf(v)); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	// Not dec.More, which takes a stray '}' or ']' for the end of input.
	if rest := bytes.Trim(data[dec.InputOffset():], " \t\r\n"); len(rest) > 0 {
		return errors.New("trailing data after the JSON object")
	}
	return nil
}

func failure(e *api.Error) api.Response {
	return api.Response{OK: false, Error: e}
}
