package livefeed

import (
	"testing"

	"github.com/outpost-edge/outpost/internal/hub/store"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func pt(dev, sensor string, seq uint64) store.Point {
	return store.Point{DeviceID: dev, Sensor: sensor, Seq: seq, Kind: store.KindNum, Num: float64(seq)}
}

func TestFilters(t *testing.T) {
	batch := []store.Point{pt("a", "t", 1), pt("b", "t", 1), pt("a", "h", 2)}
	tests := []struct {
		name   string
		filter Filter
		want   int
	}{
		{"everything", Filter{}, 3},
		{"one device", Filter{Devices: []string{"a"}}, 2},
		{"one sensor", Filter{Sensors: []string{"t"}}, 2},
		{"device and sensor", Filter{Devices: []string{"a"}, Sensors: []string{"h"}}, 1},
		{"no match", Filter{Devices: []string{"c"}}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := New(4)
			s := f.Subscribe(tt.filter)
			defer s.Close()
			f.Publish(batch)
			got := 0
			select {
			case b := <-s.C():
				got = len(b)
			default:
			}
			if got != tt.want {
				t.Fatalf("got %d points, want %d", got, tt.want)
			}
		})
	}
}

func TestPublishCopies(t *testing.T) {
	f := New(1)
	s := f.Subscribe(Filter{})
	defer s.Close()
	batch := []store.Point{pt("a", "t", 1)}
	f.Publish(batch)
	batch[0].Seq = 99 // the publisher reuses its slice
	if got := (<-s.C())[0].Seq; got != 1 {
		t.Fatalf("subscriber saw seq %d, want 1", got)
	}
}

func TestSlowSubscriberDropsAndIsTold(t *testing.T) {
	f := New(2)
	slow := f.Subscribe(Filter{})
	defer slow.Close()
	for i := range 5 {
		f.Publish([]store.Point{pt("a", "t", uint64(i)), pt("a", "t", uint64(i)+100)}) // never blocks
	}
	select {
	case <-slow.Notify():
	default:
		t.Fatal("no drop notification")
	}
	if got := slow.TakeDropped(); got != 6 {
		t.Fatalf("dropped %d points, want 6 (3 batches of 2)", got)
	}
	if got := slow.TakeDropped(); got != 0 {
		t.Fatalf("TakeDropped did not reset: %d", got)
	}
	if got := (<-slow.C())[0].Seq; got != 0 {
		t.Fatalf("first buffered batch starts at seq %d, want 0 (the oldest kept)", got)
	}
}

func TestClose(t *testing.T) {
	f := New(1)
	s := f.Subscribe(Filter{})
	if f.Subscribers() != 1 {
		t.Fatal("subscriber not counted")
	}
	s.Close()
	s.Close()
	if f.Subscribers() != 0 {
		t.Fatal("subscriber not removed")
	}
	f.Publish([]store.Point{pt("a", "t", 1)})
	select {
	case <-s.C():
		t.Fatal("closed subscription received a batch")
	default:
	}
}
