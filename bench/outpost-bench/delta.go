package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/outpost-edge/outpost/internal/otadelta"
)

// runDelta prints, for each pair OLD=NEW of files, the full size, the size
// of the OTA delta the hub would publish (package otadelta, the hub's and
// the agent's code) and their ratio, after checking that the delta decodes
// to NEW.
func runDelta(_ context.Context, args []string, w io.Writer) error {
	fs := flag.NewFlagSet("delta", flag.ContinueOnError)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return errors.New("usage: outpost-bench delta LABEL:OLD=NEW…")
	}
	fmt.Fprintf(w, "%-28s %12s %12s %8s %10s %10s\n", "case", "full bytes", "delta bytes", "ratio", "encode", "decode")
	for _, arg := range fs.Args() {
		label, pair, ok := strings.Cut(arg, ":")
		oldPath, newPath, ok2 := strings.Cut(pair, "=")
		if !ok || !ok2 {
			return fmt.Errorf("argument %q: want LABEL:OLD=NEW", arg)
		}
		old, err := os.ReadFile(oldPath)
		if err != nil {
			return err
		}
		new, err := os.ReadFile(newPath)
		if err != nil {
			return err
		}
		t0 := time.Now()
		delta, err := otadelta.Encode(old, new)
		if err != nil {
			return fmt.Errorf("%s: %w", label, err)
		}
		enc := time.Since(t0)
		t0 = time.Now()
		var out bytes.Buffer
		if _, err := otadelta.Decode(bytes.NewReader(delta), old, &out, int64(len(new))); err != nil || !bytes.Equal(out.Bytes(), new) {
			return fmt.Errorf("%s: the delta does not decode to the new file (%v)", label, err)
		}
		dec := time.Since(t0)
		fmt.Fprintf(w, "%-28s %12d %12d %7.2f%% %10s %10s\n", label, len(new), len(delta),
			100*float64(len(delta))/float64(len(new)), enc.Round(time.Millisecond), dec.Round(time.Millisecond))
	}
	return nil
}
