package procname

import (
	"strings"
	"testing"
)

func TestSetTruncates(t *testing.T) {
	old, err := Get()
	if err != nil {
		t.Fatal(err)
	}
	defer Set(old)
	if err := Set("forkd: worker gen 3 slot 1"); err != nil {
		t.Fatal(err)
	}
	got, err := Get()
	if err != nil {
		t.Fatal(err)
	}
	if got != "forkd: worker g" || len(got) != MaxLen || !strings.HasPrefix("forkd: worker gen 3 slot 1", got) {
		t.Fatalf("comm = %q", got)
	}
}
