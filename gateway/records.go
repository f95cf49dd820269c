package main

import (
	"sync"
	"sync/atomic"
	"time"
)

// Record is one connection (or plain-HTTP request) a sandbox made through the gateway: where to, what was decided,
// and the bytes it moved (from the sandbox's side: sent to the destination, received from it).
type Record struct {
	At       int64  `json:"at"`
	Host     string `json:"host"`
	Port     int    `json:"port"`
	Kind     string `json:"kind"` // connect | http
	Allowed  bool   `json:"allowed"`
	Reason   string `json:"reason,omitempty"`
	Sent     int64  `json:"sent"`
	Received int64  `json:"received"`
	EndedAt  int64  `json:"endedAt,omitempty"`
	Open     bool   `json:"open,omitempty"`
	// Address the gateway connected to (after its own resolution).
	Address string `json:"address,omitempty"`
}

// live is a record whose byte counts still move.
type live struct {
	rec      Record
	sent     atomic.Int64
	received atomic.Int64
	ended    atomic.Int64
	// Why an allowed connection was cut short (its sandbox's byte cap), once it was.
	cut atomic.Pointer[string]
}

func (l *live) snapshot() Record {
	r := l.rec
	r.Sent = l.sent.Load()
	r.Received = l.received.Load()
	if why := l.cut.Load(); why != nil {
		r.Reason = *why
	}
	if end := l.ended.Load(); end > 0 {
		r.EndedAt = end
	} else if r.Allowed {
		r.Open = true
	}
	return r
}

// Book keeps the records of every sandbox by its egress id, bounded: the newest maxPerSandbox of each, and a
// sandbox's records for keep after its last one.
type Book struct {
	mu            sync.Mutex
	sandboxes     map[string]*sandboxBook
	maxPerSandbox int
	keep          time.Duration
}

type sandboxBook struct {
	records []*live
	dropped int
	last    time.Time
}

func NewBook(maxPerSandbox int, keep time.Duration) *Book {
	return &Book{sandboxes: map[string]*sandboxBook{}, maxPerSandbox: maxPerSandbox, keep: keep}
}

// Add records a connection and returns it, so its bytes and end can be set as they happen.
func (b *Book) Add(id string, r Record) *live {
	l := &live{rec: r}
	if !r.Allowed {
		l.ended.Store(r.At)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.sandboxes[id]
	if s == nil {
		s = &sandboxBook{}
		b.sandboxes[id] = s
	}
	s.records = append(s.records, l)
	if len(s.records) > b.maxPerSandbox {
		s.dropped += len(s.records) - b.maxPerSandbox
		s.records = s.records[len(s.records)-b.maxPerSandbox:]
	}
	s.last = time.Now()
	return l
}

// Since returns a sandbox's records begun at or after since (ms since the epoch), and how many were dropped.
func (b *Book) Since(id string, since int64) ([]Record, int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.sandboxes[id]
	if s == nil {
		return []Record{}, 0
	}
	out := []Record{}
	for _, l := range s.records {
		// A connection begun earlier but still moving bytes counts too (a session's kept connection).
		if l.rec.At >= since || l.ended.Load() == 0 || l.ended.Load() >= since {
			out = append(out, l.snapshot())
		}
	}
	return out, s.dropped
}

// Expire forgets sandboxes with no record for longer than keep.
func (b *Book) Expire(now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for id, s := range b.sandboxes {
		if now.Sub(s.last) > b.keep {
			delete(b.sandboxes, id)
		}
	}
}

func nowMs() int64 { return time.Now().UnixMilli() }
