// Command helper is a workload for the workload package's tests. Its first
// argument picks a behaviour; see the cases below.
package main

import (
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: helper MODE [ARGS]")
		os.Exit(64)
	}
	args := os.Args[2:]
	switch os.Args[1] {
	case "serve": // serve PORT STATUS: HTTP on 127.0.0.1:PORT, /health answers STATUS; exits 0 on SIGTERM.
		status, _ := strconv.Atoi(args[1])
		http.HandleFunc("/health", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(status) })
		http.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
			fmt.Fprintf(w, "hello from %s", os.Getenv("OUTPOST_WORKLOAD_VERSION"))
		})
		go func() {
			if err := http.ListenAndServe("127.0.0.1:"+args[0], nil); err != nil {
				fmt.Println("listen:", err)
				os.Exit(3)
			}
		}()
		fmt.Println("serving on", args[0])
		waitTerm(true)
	case "crash": // crash FILE CODE: append the start time to FILE, exit CODE.
		f, err := os.OpenFile(args[0], os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			fmt.Println(err)
			os.Exit(4)
		}
		fmt.Fprintln(f, time.Now().UnixNano())
		_ = f.Close()
		code, _ := strconv.Atoi(args[1])
		fmt.Println("crashing with", code)
		os.Exit(code)
	case "term": // term handle|ignore: wait for SIGTERM; exit 0 or ignore it.
		// "ready" comes once SIGTERM is handled or ignored: a test that
		// stops the workload after it must see the chosen behaviour.
		c := make(chan os.Signal, 1)
		if args[0] == "handle" {
			signal.Notify(c, syscall.SIGTERM)
		} else {
			signal.Ignore(syscall.SIGTERM)
		}
		fmt.Println("ready")
		waitTerm(args[0] == "handle")
	case "alloc": // alloc MIB: allocate and touch MIB MiB, report, hold it 1s, exit 0.
		n, _ := strconv.Atoi(args[0])
		var keep [][]byte
		for i := 0; i < n; i++ {
			b := make([]byte, 1<<20)
			for j := 0; j < len(b); j += 4096 {
				b[j] = 1
			}
			keep = append(keep, b)
		}
		fmt.Printf("allocated %d MiB\n", len(keep))
		// Held long enough for a polling watchdog to see it.
		time.Sleep(time.Second)
		runtime.KeepAlive(keep)
	case "print": // print N: print N numbered lines, then wait for SIGTERM.
		n, _ := strconv.Atoi(args[0])
		pad := strings.Repeat("x", 100)
		for i := 0; i < n; i++ {
			fmt.Printf("line %d %s\n", i, pad)
		}
		fmt.Println("printed")
		waitTerm(true)
	case "id": // id: print version and uid, then wait for SIGTERM.
		fmt.Printf("version=%s uid=%d\n", os.Getenv("OUTPOST_WORKLOAD_VERSION"), os.Getuid())
		waitTerm(true)
	default:
		fmt.Fprintln(os.Stderr, "unknown mode", os.Args[1])
		os.Exit(64)
	}
}

// waitTerm waits for SIGTERM and exits 0 if handle, else ignores it and
// sleeps until killed.
func waitTerm(handle bool) {
	if !handle {
		signal.Ignore(syscall.SIGTERM)
		select {}
	}
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGTERM)
	<-c
	fmt.Println("got SIGTERM")
	os.Exit(0)
}
