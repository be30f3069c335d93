package grpctransport

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"runtime"

	"github.com/flowps/flowps/ps"
	"github.com/flowps/flowps/ps/wire"
	"github.com/flowps/flowps/transport/grpc/pb"
	"google.golang.org/protobuf/proto"
)

// The data path carries Pull and Push calls over a plain TCP connection (TLS
// when the server serves TLS) beside the gRPC connection, without HTTP/2:
// gRPC copies every byte of a tensor three times in user space (into its
// write buffer, out of its read buffer into 16 KiB frames, out of those)
// and costs about five times the CPU of a raw exchange per small call; here
// the sender hands the kernel views of its tensors (writev) and the
// receiver reads straight into the destination. gRPC keeps everything
// else: Create, replication, discovery (the DataPath RPC), and every call
// when the data path is off or unavailable.
//
// A connection starts with both sides sending dataMagic and then carries
// one call at a time, the client's request then the server's response:
//
//	request:  op u8 | enc u8 | beat u16 | header bytes u32 | data bytes u64 | header | data
//	response: status u8 | 0 u8 | 0 u16 | header bytes u32 | data bytes u64 | header | data
//
// (little-endian). Pull: the request header is a pb.PullRequest and there
// is no data; the response header a pb.PullHeader, followed by every part's
// values as float32. Push: the request header is a pb.PushHeader followed by
// the gradients in encoding enc (pb.ValueEncoding); the response header a
// pb.PushResponse. Replicate (only to a server whose DataPathInfo says
// replicate): the request header is the JSON header of the replication
// envelope (replica.go) followed by the ops' gradients as float32; the
// response header the JSON ps.ReplicateResponse. A failed call answers
// status dataStatusError with a pb.DataError header. A client abandons a
// call (cancel, deadline) by closing the connection; the server then
// cancels the call's context.
//
// While a call runs (a pull may wait long at a sync barrier) the server
// sends a bare prefix with status dataStatusBeat every beat seconds of the
// request (0: never), and the client gives a connection that stays silent
// for two beats up as dead (ps.ErrUnavailable): the keepalive that gRPC's
// pings give the other path, which TCP's own keepalive cannot (a proxy or
// middlebox that stops forwarding still acknowledges its probes).

// dataMagic opens every data-path connection, in both directions; its last
// byte is the protocol version.
var dataMagic = [4]byte{'F', 'P', 'D', 1}

// dataVersion is the protocol version a server announces in DataPathInfo.
const dataVersion = 1

// localDataPath: servers also serve the data path on an abstract Unix
// socket (a Linux feature), and clients that can reach it use it. The raw
// baselines of benchmarks/transport (rows unix and tcp, p50, medians of
// three runs on the 2-core development machine) move a 1 MiB push in 111
// against 304 µs, a 4 KiB one in 9.8 against 16.5 µs.
const localDataPath = runtime.GOOS == "linux"

// dataALPN is the TLS application protocol of data-path connections.
const dataALPN = "flowps-data/1"

const (
	dataOpPull      = 1
	dataOpPush      = 2
	dataOpReplicate = 3

	dataStatusOK    = 0
	dataStatusError = 1
	dataStatusBeat  = 2 // the call is still running (no header, no data)

	dataPrefixBytes = 16
)

// dataPrefix is the fixed start of a request or response.
type dataPrefix struct {
	kind   byte   // op of a request, status of a response
	enc    byte   // push: pb.ValueEncoding of the data
	beat   uint16 // request: heartbeat interval in seconds (0: none)
	header uint32
	data   uint64
}

func (p dataPrefix) put(b []byte) []byte {
	b = append(b, p.kind, p.enc)
	b = binary.LittleEndian.AppendUint16(b, p.beat)
	b = binary.LittleEndian.AppendUint32(b, p.header)
	return binary.LittleEndian.AppendUint64(b, p.data)
}

// errDataFrame marks a malformed data-path message.
var errDataFrame = fmt.Errorf("%w: malformed data path message", ps.ErrInvalidArgument)

// readDataPrefix reads a prefix and checks its sizes against the limits: a
// peer must not make us allocate at will.
func readDataPrefix(r io.Reader, maxHeader int, maxData int64) (dataPrefix, error) {
	var b [dataPrefixBytes]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return dataPrefix{}, err
	}
	p := dataPrefix{kind: b[0], enc: b[1], beat: binary.LittleEndian.Uint16(b[2:]),
		header: binary.LittleEndian.Uint32(b[4:]), data: binary.LittleEndian.Uint64(b[8:])}
	switch {
	case int64(p.header) > int64(maxHeader):
		return p, fmt.Errorf("%w: header of %d bytes exceeds %d", errDataFrame, p.header, maxHeader)
	case p.data > uint64(maxData):
		return p, ps.Errorf(ps.ErrTooLarge, "tensor data of %d bytes exceeds the limit of %d bytes", p.data, maxData)
	}
	return p, nil
}

// readDataHeader reads n bytes of header and decodes them into m.
func readDataHeader(r io.Reader, n uint32, m proto.Message) error {
	b, err := readDataBytes(r, n)
	if err != nil {
		return err
	}
	if err := proto.Unmarshal(b, m); err != nil {
		return fmt.Errorf("%w: header: %v", errDataFrame, err)
	}
	return nil
}

// readDataBytes reads n bytes of header (n was checked by readDataPrefix).
func readDataBytes(r io.Reader, n uint32) ([]byte, error) {
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, err
	}
	return b, nil
}

// readValues fills segs, in order, from r, which holds the values in
// encoding enc. scratch is reused for 2-byte encodings.
func readValues(r io.Reader, segs [][]float32, enc pb.ValueEncoding, scratch []byte) error {
	for _, s := range segs {
		if len(s) == 0 {
			continue
		}
		if enc == pb.ValueEncoding_VALUE_ENCODING_FLOAT32 {
			if _, err := io.ReadFull(r, f32bytes(s)); err != nil {
				return err
			}
			continue
		}
		decode := wire.DecodeBF16
		if enc == pb.ValueEncoding_VALUE_ENCODING_FP16 {
			decode = wire.DecodeFP16
		}
		for len(s) > 0 {
			k := min(len(s), len(scratch)/2)
			b := scratch[:2*k]
			if _, err := io.ReadFull(r, b); err != nil {
				return err
			}
			if _, err := decode(s[:0:k], b); err != nil {
				return fmt.Errorf("%w: %v", errDataFrame, err)
			}
			s = s[k:]
		}
	}
	return nil
}

// unexpectedEOF turns an EOF inside a message into io.ErrUnexpectedEOF.
func unexpectedEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// dataBufSize is the buffered reader of a data-path connection: prefixes
// and headers are read through it, and values larger than it straight into
// their destination.
const dataBufSize = 32 << 10

func newDataReader(r io.Reader) *bufio.Reader { return bufio.NewReaderSize(r, dataBufSize) }
