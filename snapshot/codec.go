package snapshot

import (
	"errors"
	"fmt"

	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// snapshotMessageBuffer fits one snapshot message: etcd sends the database in 32 KiB blobs
// (snapshotSendBufferSize, the same in every version since 3.0) and the message adds a header,
// the remaining byte count and the storage version.
const snapshotMessageBuffer = 36 << 10

// snapshotBuffers holds the buffers a snapshot message is assembled in (gRPC receives it as
// 16 KiB HTTP/2 frames).
var snapshotBuffers = mem.NewTieredBufferPool(snapshotMessageBuffer)

// snapshotMessage is etcd's SnapshotResponse as the backup reads it, without allocating per
// message: Blob points into a pooled buffer that stays valid until the next message is decoded
// into the same snapshotMessage (or release is called). The header is skipped; the revision
// comes from the Status call.
type snapshotMessage struct {
	RemainingBytes uint64
	Blob           []byte
	Version        string
	buf            mem.Buffer
}

// etcdserverpb.SnapshotResponse field numbers.
const (
	snapshotFieldRemainingBytes protowire.Number = 2
	snapshotFieldBlob           protowire.Number = 3
	snapshotFieldVersion        protowire.Number = 4
)

var errMalformedSnapshotMessage = errors.New("malformed snapshot message")

// decode parses a SnapshotResponse from data, keeping the buffer the blob points into.
func (m *snapshotMessage) decode(data mem.BufferSlice) error {
	m.release()
	buf := data.MaterializeToBuffer(snapshotBuffers)
	b := buf.ReadOnlyData()
	m.RemainingBytes, m.Blob = 0, nil
	version := false
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			buf.Free()
			return fmt.Errorf("%w: %w", errMalformedSnapshotMessage, protowire.ParseError(n))
		}
		b = b[n:]
		switch {
		case num == snapshotFieldRemainingBytes && typ == protowire.VarintType:
			m.RemainingBytes, n = protowire.ConsumeVarint(b)
		case num == snapshotFieldBlob && typ == protowire.BytesType:
			m.Blob, n = protowire.ConsumeBytes(b)
		case num == snapshotFieldVersion && typ == protowire.BytesType:
			var v []byte
			v, n = protowire.ConsumeBytes(b)
			if string(v) != m.Version { // the same in every message: allocate once
				m.Version = string(v)
			}
			version = true
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			buf.Free()
			return fmt.Errorf("%w: field %d: %w", errMalformedSnapshotMessage, num, protowire.ParseError(n))
		}
		b = b[n:]
	}
	if !version {
		m.Version = ""
	}
	m.buf = buf
	return nil
}

// release returns the buffer of the last message to the pool; Blob is invalid afterwards.
func (m *snapshotMessage) release() {
	if m.buf != nil {
		m.buf.Free()
		m.buf, m.Blob = nil, nil
	}
}

// snapshotCodec is gRPC's proto codec, except that it decodes into a *snapshotMessage without
// proto.Unmarshal's copies and per-message garbage, in buffers of the right size (gRPC's pool has
// no tier between 32 KiB and 1 MiB). Only the Snapshot call uses it.
type snapshotCodec struct{}

var _ encoding.CodecV2 = snapshotCodec{}

func (snapshotCodec) Name() string { return grpcproto.Name }

func (snapshotCodec) Marshal(v any) (mem.BufferSlice, error) {
	return encoding.GetCodecV2(grpcproto.Name).Marshal(v)
}

func (snapshotCodec) Unmarshal(data mem.BufferSlice, v any) error {
	switch m := v.(type) {
	case *snapshotMessage:
		return m.decode(data)
	case proto.Message:
		buf := data.MaterializeToBuffer(snapshotBuffers)
		defer buf.Free()
		return proto.Unmarshal(buf.ReadOnlyData(), m)
	}
	return fmt.Errorf("failed to unmarshal, message is %T, want proto.Message", v)
}
