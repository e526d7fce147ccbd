package flow

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"google.golang.org/grpc"
)

// codecName is the gRPC content subtype of Flow C messages.
const codecName = "json"

// jsonCodec encodes Flow C messages as JSON; decoding refuses unknown fields
// and trailing data.
type jsonCodec struct{}

func (jsonCodec) Name() string { return codecName }

func (jsonCodec) Marshal(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("flow: encode %T: %w", v, err)
	}
	return b, nil
}

func (jsonCodec) Unmarshal(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("flow: decode %T: %w", v, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return fmt.Errorf("flow: decode %T: trailing data", v)
	}
	return nil
}

// ServerCodec is the server option that makes a gRPC server speak the JSON
// encoding of this package. Every server of a Flow C service needs it.
func ServerCodec() grpc.ServerOption { return grpc.ForceServerCodec(jsonCodec{}) }

// CallCodec is the call option of the JSON encoding; the client stubs of this
// package add it to every call.
func CallCodec() grpc.CallOption { return grpc.ForceCodec(jsonCodec{}) }
