package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net"
	"testing"

	"github.com/btrfs-vdo/btrfs-vdo/api"
)

// readerConn feeds readFrame from memory: it only ever reads.
type readerConn struct {
	net.Conn
	r io.Reader
}

func (c readerConn) Read(b []byte) (int, error) { return c.r.Read(b) }

// argDecoders decode each op's arguments exactly as its handler does,
// without running the handler (which would touch the filesystem).
var argDecoders = map[api.Op]func(json.RawMessage) error{
	api.OpHello:               decodeOnly[api.HelloArgs],
	api.OpStatus:              decodeOnly[api.StatusArgs],
	api.OpPoolSetup:           decodeOnly[api.PoolSetupArgs],
	api.OpVolumeCreate:        decodeOnly[api.VolumeArgs],
	api.OpVolumeRemove:        decodeOnly[api.VolumeArgs],
	api.OpVolumeVerify:        decodeOnly[api.VolumeArgs],
	api.OpVolumeStart:         decodeOnly[api.VolumeArgs],
	api.OpVolumeStop:          decodeOnly[api.VolumeArgs],
	api.OpVolumeInfo:          decodeOnly[api.VolumeArgs],
	api.OpVolumeRevert:        decodeOnly[api.RevertArgs],
	api.OpVolumeResize:        decodeOnly[api.ResizeArgs],
	api.OpVolumeExport:        decodeOnly[api.VolumeArgs],
	api.OpVolumeExportEnd:     decodeOnly[api.ExportEndArgs],
	api.OpVolumeImportData:    decodeOnly[api.ImportDataArgs],
	api.OpVolumeImportDataEnd: decodeOnly[api.ImportDataEndArgs],
	api.OpVolumeImportVolume:  decodeOnly[api.ImportVolumeArgs],
	api.OpOptimize:            decodeOnly[api.OptimizeArgs],
	api.OpJobs:                decodeOnly[api.JobsArgs],
	api.OpStats:               decodeOnly[api.StatsArgs],
}

func decodeOnly[T any](raw json.RawMessage) error {
	_, err := decodeArgs[T](raw)
	return err
}

func TestArgDecodersCoverEveryOp(t *testing.T) {
	for op := range api.Ops {
		if argDecoders[op] == nil {
			t.Errorf("no argument decoder for %s", op)
		}
	}
}

// FuzzDecodeRequest feeds arbitrary bytes through the daemon's framing,
// request decoding and argument decoding: nothing panics, and bad input
// is always refused with an *api.Error of a request code.
func FuzzDecodeRequest(f *testing.F) {
	f.Add([]byte(`{"v":1,"op":"hello","args":{"client":"fuzz"}}` + "\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		frame, err := readFrame(readerConn{r: bytes.NewReader(data)})
		end := bytes.IndexByte(data, '\n') + 1
		if wantErr := end == 0 || end > api.MaxFrameBytes; (err != nil) != wantErr {
			t.Fatalf("readFrame(%q) = %q, %v", data, frame, err)
		}
		if err != nil {
			return
		}
		if !bytes.Equal(frame, data[:end]) {
			t.Fatalf("readFrame(%q) = %q, want the first line", data, frame)
		}
		req, apiErr := decodeRequest(frame)
		if apiErr != nil {
			checkRefusal(t, frame, apiErr, api.CodeBadRequest, api.CodeUnsupportedProtocol)
			return
		}
		decode, known := argDecoders[req.Op]
		if !known {
			_, err := (&Server{}).dispatch(req)
			checkRefusal(t, frame, err, api.CodeBadRequest)
			return
		}
		if len(req.Args) == 0 {
			req.Args = json.RawMessage("{}") // as dispatch does
		}
		if err := decode(req.Args); err != nil {
			checkRefusal(t, frame, err, api.CodeBadRequest)
		}
	})
}

func checkRefusal(t *testing.T, frame []byte, err error, codes ...api.Code) {
	t.Helper()
	var apiErr *api.Error
	if !errors.As(err, &apiErr) {
		t.Fatalf("%q refused with %T %v, not an *api.Error", frame, err, err)
	}
	for _, code := range codes {
		if apiErr.Code == code && apiErr.Message != "" {
			return
		}
	}
	t.Fatalf("%q refused with %+v, want a message and one of %v", frame, apiErr, codes)
}
