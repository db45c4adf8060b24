package main

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"time"
)

// The synthetic chat: a seeded, deterministic stream of messages, the same
// in every replica, so that replicas can split it like a load balancer
// would (round-robin by message) without talking to each other.

// Kinds of chatters.
const (
	kindRegular = "regular" // talks now and then
	kindSpammer = "spammer" // sends several messages a second for the whole stream
	kindRaider  = "raider"  // a new user arriving with a raid, 1-3 messages in a burst
)

var kinds = []string{kindRegular, kindSpammer, kindRaider}

// message is one chat message.
type message struct {
	Seq  int           // position in the stream, from 0
	At   time.Duration // offset from the stream's start
	User string
	Kind string
	Wiki bool // asks for a Wikipedia lookup ("!wiki ...")
	Text string
}

// chatPlan sizes a stream from a message count: half from regulars, a fifth
// from a few spammers, the rest from a raid arriving between 40% and 55% of
// the duration.
type chatPlan struct {
	Messages  int
	Duration  time.Duration
	Regulars  int
	Spammers  int
	Raiders   int
	RaidStart time.Duration
	RaidEnd   time.Duration
}

func planChat(messages int, d time.Duration) chatPlan {
	p := chatPlan{Messages: messages, Duration: d}
	p.Regulars = max(2, messages/14) // ~7 messages each
	p.Spammers = max(1, messages/500)
	p.Raiders = max(2, messages*3/10/2) // ~2 messages each
	p.RaidStart = d * 40 / 100
	p.RaidEnd = d * 55 / 100
	return p
}

// newChat returns the stream for seed, sorted by time.
func newChat(seed uint64, p chatPlan) []message {
	rng := rand.New(rand.NewPCG(seed, 0x666c6f6f64676174)) // "floodgat"
	var msgs []message
	add := func(user, kind string, at time.Duration) {
		wiki := rng.IntN(10) == 0
		text := phrases[rng.IntN(len(phrases))]
		if wiki {
			text = "!wiki " + topics[rng.IntN(len(topics))]
		}
		msgs = append(msgs, message{At: at, User: user, Kind: kind, Wiki: wiki, Text: text})
	}
	nRaid := p.Messages * 3 / 10
	nSpam := p.Messages / 5
	nRegular := p.Messages - nRaid - nSpam
	// Regulars: uniform over the stream.
	for i := 0; i < nRegular; i++ {
		u := rng.IntN(p.Regulars)
		add(fmt.Sprintf("viewer%03d", u), kindRegular, randDur(rng, 0, p.Duration))
	}
	// Spammers: uniform too, but few of them, so each sends many.
	for i := 0; i < nSpam; i++ {
		u := rng.IntN(p.Spammers)
		add(fmt.Sprintf("spam_bot%d", u), kindSpammer, randDur(rng, 0, p.Duration))
	}
	// The raid: new users, all within a short burst.
	for i := 0; i < nRaid; i++ {
		u := rng.IntN(p.Raiders)
		add(fmt.Sprintf("raider%04d", u), kindRaider, randDur(rng, p.RaidStart, p.RaidEnd))
	}
	sort.SliceStable(msgs, func(i, j int) bool { return msgs[i].At < msgs[j].At })
	for i := range msgs {
		msgs[i].Seq = i
	}
	return msgs
}

func randDur(rng *rand.Rand, from, to time.Duration) time.Duration {
	if to <= from {
		return from
	}
	return from + time.Duration(rng.Int64N(int64(to-from)))
}

// share returns the messages replica id (1-based) of n handles:
// round-robin by message, as a load balancer would spread them.
func share(msgs []message, id, n int) []message {
	var out []message
	for _, m := range msgs {
		if m.Seq%n == id-1 {
			out = append(out, m)
		}
	}
	return out
}

// chatters counts the distinct users of each kind.
func chatters(msgs []message) map[string]int {
	seen := map[string]bool{}
	out := map[string]int{}
	for _, m := range msgs {
		if !seen[m.User] {
			seen[m.User] = true
			out[m.Kind]++
		}
	}
	return out
}

var phrases = []string{
	"hi chat", "what model are you?", "tell me a joke", "gg", "what game is this?",
	"can you summarize the last round?", "who's winning?", "recommend a build",
	"PogChamp", "how long is the stream today?", "explain the meta", "lol",
}

var topics = []string{"Redis", "Go (programming language)", "Rate limiting", "Twitch", "Large language model", "Token bucket"}
