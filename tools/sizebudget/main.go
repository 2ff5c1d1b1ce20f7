// Command sizebudget fails when a binary is larger than its budget and
// then says where the bytes are: the modules it links (go version -m) and
// the packages and modules that take the most space, read from the
// symbol table of an unstripped build of the same package.
//
//	go run ./tools/sizebudget -budget 12MiB -binary dist/bin/linux_arm64/outpost-agent \
//	    -pkg ./cmd/outpost-agent -goos linux -goarch arm64
//
// -top N prints the breakdown even within the budget. Exit status: 0
// within the budget, 1 over it, 2 on bad usage or a failed build.
package main

import (
	"bytes"
	"cmp"
	"context"
	"debug/elf"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

func main() {
	err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr)
	var over *overBudget
	switch {
	case errors.As(err, &over):
		fmt.Fprintln(os.Stderr, "sizebudget:", err)
		os.Exit(1)
	case errors.Is(err, flag.ErrHelp):
	case err != nil:
		fmt.Fprintln(os.Stderr, "sizebudget:", err)
		os.Exit(2)
	}
}

type overBudget struct {
	binary       string
	size, budget int64
}

func (e *overBudget) Error() string {
	return fmt.Sprintf("%s is %s, over its budget of %s by %s", e.binary, mib(e.size), mib(e.budget), mib(e.size-e.budget))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("sizebudget", flag.ContinueOnError)
	fs.SetOutput(stderr)
	budgetFlag := fs.String("budget", "12MiB", "largest allowed size: bytes, or a number with KiB or MiB")
	binary := fs.String("binary", "", "the release binary to check (required)")
	pkg := fs.String("pkg", "", "the main package it was built from, for the breakdown (e.g. ./cmd/outpost-agent)")
	goos := fs.String("goos", "linux", "GOOS of the binary")
	goarch := fs.String("goarch", "arm64", "GOARCH of the binary")
	goarm := fs.String("goarm", "", "GOARM of the binary (arm only)")
	top := fs.Int("top", 0, "print the N largest packages and modules even within the budget")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *binary == "" || fs.NArg() > 0 {
		fs.Usage()
		return errors.New("-binary is required and there are no arguments")
	}
	budget, err := parseSize(*budgetFlag)
	if err != nil {
		return err
	}
	fi, err := os.Stat(*binary)
	if err != nil {
		return err
	}
	size := fi.Size()
	fmt.Fprintf(stdout, "%s: %d bytes (%s), budget %s: %s\n", *binary, size, mib(size), mib(budget), verdict(size, budget))
	n := *top
	if size > budget && n == 0 {
		n = 25
	}
	if n > 0 {
		if err := breakdown(ctx, stdout, *binary, *pkg, []string{"GOOS=" + *goos, "GOARCH=" + *goarch, "GOARM=" + *goarm}, n); err != nil {
			return err
		}
	}
	if size > budget {
		return &overBudget{binary: *binary, size: size, budget: budget}
	}
	return nil
}

func verdict(size, budget int64) string {
	if size > budget {
		return "OVER"
	}
	return fmt.Sprintf("within (%s to spare)", mib(budget-size))
}

// breakdown prints the binary's modules and, when pkg is set, the n
// largest packages and modules of an unstripped build of pkg.
func breakdown(ctx context.Context, w io.Writer, binary, pkg string, env []string, n int) error {
	mods, err := output(ctx, nil, "go", "version", "-m", binary)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "\nmodules linked (go version -m):\n%s", mods)
	if pkg == "" {
		return nil
	}
	dir, err := os.MkdirTemp("", "sizebudget-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	unstripped := filepath.Join(dir, "bin")
	// -w drops DWARF only: the symbol table stays for go tool nm.
	if _, err := output(ctx, append([]string{"CGO_ENABLED=0"}, env...), "go", "build", "-trimpath", "-ldflags=-w", "-o", unstripped, pkg); err != nil {
		return err
	}
	pkgs, err := symbolSizes(unstripped)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "\nlargest packages (ELF symbols of an unstripped build of %s; the rest of the file is mostly the function table):\n", pkg)
	printTop(w, pkgs, n)
	fmt.Fprintf(w, "\nlargest modules:\n")
	printTop(w, moduleSizes(pkgs, modulePaths(mods)), n)
	return nil
}

func output(ctx context.Context, env []string, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, stderr.Bytes())
	}
	return out, nil
}

// symbolSizes sums the sizes of an ELF binary's symbols by package,
// counting what the file holds: symbols in zero-filled sections (.bss,
// .noptrbss) take memory, not bytes of the binary. Type descriptors,
// interned strings and other linker data (type:, go:) count as
// "(linker data)".
func symbolSizes(path string) (map[string]int64, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	syms, err := f.Symbols()
	if err != nil {
		return nil, fmt.Errorf("%s: %w (built stripped?)", path, err)
	}
	sizes := map[string]int64{}
	for _, sym := range syms {
		i := int(sym.Section)
		if sym.Size == 0 || i <= 0 || i >= len(f.Sections) || f.Sections[i].Type == elf.SHT_NOBITS {
			continue
		}
		sizes[packageOf(sym.Name)] += int64(sym.Size)
	}
	return sizes, nil
}

// packageOf is the import path of a symbol: "github.com/a/b.(*T).M" is
// github.com/a/b, "runtime.mallocgc" is runtime.
func packageOf(sym string) string {
	if strings.HasPrefix(sym, "type:") || strings.HasPrefix(sym, "go:") {
		return "(linker data)"
	}
	// Generic instantiations carry import paths inside brackets.
	head := sym
	if i := strings.IndexAny(head, "[("); i >= 0 {
		head = head[:i]
	}
	slash := strings.LastIndex(head, "/")
	if dot := strings.Index(head[slash+1:], "."); dot >= 0 {
		return head[:slash+1+dot]
	}
	return head
}

// modulePaths reads the main module and the dependencies from go version -m.
func modulePaths(versionM []byte) []string {
	var mods []string
	for line := range strings.Lines(string(versionM)) {
		f := strings.Fields(line)
		if len(f) >= 2 && (f[0] == "mod" || f[0] == "dep") {
			mods = append(mods, f[1])
		}
	}
	return mods
}

// moduleSizes sums package sizes by the longest module path that prefixes
// them; the rest (the standard library, linker data) by their own name.
func moduleSizes(pkgs map[string]int64, mods []string) map[string]int64 {
	out := map[string]int64{}
	for p, size := range pkgs {
		owner := "(standard library)"
		if strings.HasPrefix(p, "(") {
			owner = p
		}
		best := ""
		for _, m := range mods {
			if (p == m || strings.HasPrefix(p, m+"/")) && len(m) > len(best) {
				best = m
			}
		}
		if best != "" {
			owner = best
		}
		out[owner] += size
	}
	return out
}

func printTop(w io.Writer, sizes map[string]int64, n int) {
	type entry struct {
		name string
		size int64
	}
	var all []entry
	var total int64
	for k, v := range sizes {
		all = append(all, entry{k, v})
		total += v
	}
	slices.SortFunc(all, func(a, b entry) int { return cmp.Or(cmp.Compare(b.size, a.size), cmp.Compare(a.name, b.name)) })
	for i, e := range all {
		if i == n {
			break
		}
		fmt.Fprintf(w, "  %10s  %5.1f %%  %s\n", mib(e.size), 100*float64(e.size)/float64(max(total, 1)), e.name)
	}
}

func parseSize(s string) (int64, error) {
	mult := int64(1)
	num := s
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}} {
		if strings.HasSuffix(s, u.suffix) {
			num, mult = strings.TrimSuffix(s, u.suffix), u.mult
			break
		}
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
	if err != nil || v <= 0 {
		return 0, fmt.Errorf("budget %q: want bytes or a positive number with KiB or MiB", s)
	}
	return int64(v * float64(mult)), nil
}

func mib(n int64) string { return fmt.Sprintf("%.2f MiB", float64(n)/(1<<20)) }
