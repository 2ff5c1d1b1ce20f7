// Command websvc is the tiny HTTP service the deployment tests build,
// publish as a service artifact and deploy to agents. It listens on
// $OUTPOST_ADDRESS:--port and answers / with who and what it is.
// Flags make it misbehave on purpose: fail its health check, crash soon
// after starting, or allocate memory past its limit.
package main

import (
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"
)

// version is set with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	port := flag.Int("port", 8080, "TCP port to listen on")
	failHealth := flag.Bool("fail-health", false, "answer /healthz with 500")
	crashAfter := flag.Duration("crash-after", 0, "exit 1 this long after starting")
	allocMB := flag.Int("alloc-mb", 0, "allocate and touch this many MiB, 1 MiB every 10ms")
	flag.Parse()

	fmt.Printf("websvc %s started at %d pid %d\n", version, time.Now().UnixMilli(), os.Getpid())
	if *crashAfter > 0 {
		time.AfterFunc(*crashAfter, func() {
			fmt.Println("crashing on purpose")
			os.Exit(1)
		})
	}
	if *allocMB > 0 {
		go func() {
			var keep [][]byte
			for i := 1; i <= *allocMB; i++ {
				b := make([]byte, 1<<20)
				for j := 0; j < len(b); j += 4096 {
					b[j] = 1
				}
				keep = append(keep, b)
				if i%16 == 0 {
					fmt.Printf("allocated %d MiB\n", i)
				}
				time.Sleep(10 * time.Millisecond)
			}
			fmt.Printf("holding %d MiB\n", len(keep))
			select {}
		}()
	}
	addr := net.JoinHostPort(os.Getenv("OUTPOST_ADDRESS"), strconv.Itoa(*port))
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "websvc %s on %s pid %d\n", version, os.Getenv("OUTPOST_DEVICE_ID"), os.Getpid())
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		if *failHealth {
			http.Error(w, "unhealthy on purpose", http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	fmt.Printf("listening on %s\n", addr)
	if err := http.ListenAndServe(addr, mux); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
