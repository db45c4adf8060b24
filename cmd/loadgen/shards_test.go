package main

import "testing"

// keySlot must agree with Redis's CLUSTER KEYSLOT, or per-shard decision
// counts land on the wrong master.
func TestKeySlot(t *testing.T) {
	for _, tc := range []struct {
		key  string
		want uint16
	}{
		{"123456789", 12739}, // CRC16/XMODEM's check value 0x31C3
		{"foo", 12182},
		{"{foo}bar", 12182},
		{"x{foo}", 12182},
		{"{}foo", keySlot("{}foo")}, // an empty tag: the whole key
		{"floodgate:{u:user_00042}:w", keySlot("u:user_00042")},
	} {
		if got := keySlot(tc.key); got != tc.want {
			t.Errorf("keySlot(%q) = %d, want %d", tc.key, got, tc.want)
		}
	}
	if keySlot("{}foo") == keySlot("foo") {
		t.Error("an empty hash tag must hash the whole key")
	}
}

func TestSpread(t *testing.T) {
	for _, tc := range []struct {
		keys []int64
		want float64
	}{
		{[]int64{100, 100, 100}, 1},
		{[]int64{90, 100, 120}, 120.0 / 90},
		{[]int64{0, 10}, 0}, // an empty shard: no ratio
		{nil, 0},
	} {
		var shards []ShardResult
		for _, k := range tc.keys {
			shards = append(shards, ShardResult{Keys: k})
		}
		if got := spread(shards); got != tc.want {
			t.Errorf("spread(%v) = %v, want %v", tc.keys, got, tc.want)
		}
	}
}

func TestServerTimeFinish(t *testing.T) {
	s := ServerTime{Decisions: 1000}
	s.finish(5_000, 8_000)
	if s.ScriptUsPerDecision != 5 || s.CPUUsPerDecision != 8 || s.CeilingPerSec != 125_000 {
		t.Errorf("finish = %+v, want 5 µs script, 8 µs CPU, 125k/s", s)
	}
	var none ServerTime
	none.finish(5_000, 8_000)
	if none.CeilingPerSec != 0 {
		t.Errorf("no decisions: %+v, want no figures", none)
	}
}
