package config

import (
	"errors"
	"testing"
)

func TestNotEmpty(t *testing.T) {
	for _, v := range []string{"", " ", " \t"} {
		err := NotEmpty("NATS_URL", v)
		var ve *VarError
		if !errors.As(err, &ve) || ve.Var != "NATS_URL" || ve.Problem != "must not be empty (unset it for the default)" {
			t.Errorf("NotEmpty(%q) = %v, want the variable named with its problem", v, err)
		}
	}
	if err := NotEmpty("NATS_URL", "nats://127.0.0.1:14222"); err != nil {
		t.Errorf("a value: %v, want nil", err)
	}
	if err := errors.Join(NotEmpty("A", "x"), NotEmpty("B", "")); err == nil || errors.Join(NotEmpty("A", "x")) != nil {
		t.Errorf("joined: %v; nils must drop out of errors.Join", err)
	}
}
