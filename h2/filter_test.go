package h2

import (
	"bytes"
	"testing"
)

func settingsFrame(kv ...uint32) []byte {
	b := []byte{0, 0, 0, 0x4, 0, 0, 0, 0, 0}
	for i := 0; i < len(kv); i += 2 {
		b = append(b, byte(kv[i]>>8), byte(kv[i]), byte(kv[i+1]>>24), byte(kv[i+1]>>16), byte(kv[i+1]>>8), byte(kv[i+1]))
	}
	setLength(b, len(b)-9)
	return b
}

func TestDedupSettings(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in, out []byte
	}{
		{"distinct", settingsFrame(4, 100, 5, 16384), settingsFrame(4, 100, 5, 16384)},
		{"the last of each", settingsFrame(4, 100, 3, 10, 4, 1, 3, 20), settingsFrame(4, 1, 3, 20)},
		// An invalid INITIAL_WINDOW_SIZE ends the frame for x/net.
		{"invalid", settingsFrame(4, 1, 4, 1<<31, 4, 5), settingsFrame(4, 1<<31)},
		{"bad length", append(settingsFrame(4, 1, 4, 2), 0), append(settingsFrame(4, 1, 4, 2), 0)},
	} {
		if tc.name == "bad length" {
			setLength(tc.in, len(tc.in)-9)
			tc.out = tc.in
		}
		if got := dedupSettings(tc.in); !bytes.Equal(got, tc.out) {
			t.Errorf("%s: got %x, want %x", tc.name, got, tc.out)
		}
	}
}
