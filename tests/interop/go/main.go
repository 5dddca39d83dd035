// Command casebus-interop checks casebus's audit log artefacts with tools casebus did not
// write: filippo.io/torchwood, github.com/transparency-dev/formats and
// github.com/transparency-dev/merkle (and golang.org/x/mod/sumdb/note underneath them).
//
// It reads one JSON file (written by tests/test_interop_go.py) and checks, in order:
//   - the signed checkpoint note: the log's signature (formats' Ed25519 verifier), the
//     checkpoint body (formats' and torchwood's parsers must agree), and every witness's
//     cosignature (formats' cosignature/v1 verifier, torchwood's cosignature timestamp);
//   - with torchwood_witness_seed, the same cosignature with torchwood's own
//     CosignatureVerifier (torchwood builds one only from a private key);
//   - an inclusion proof and a consistency proof (merkle's RFC 6962 verifiers).
//
// With tiles_prefix it checks the tiled log served there instead (see tiles).
//
// With torchwood_cosign_seed it also prints a cosignature line made by torchwood's
// CosignatureSigner, for casebus to verify in turn. It prints one "ok" line per check and
// exits 1 at the first failure.
package main

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"filippo.io/torchwood"
	"github.com/transparency-dev/formats/log"
	fnote "github.com/transparency-dev/formats/note"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

type input struct {
	Origin              string   `json:"origin"`
	LogVKey             string   `json:"log_vkey"`
	WitnessVKeys        []string `json:"witness_vkeys"`
	Checkpoint          string   `json:"checkpoint"`
	TorchwoodWitness    string   `json:"torchwood_witness_name"`
	TorchwoodWitnessKey string   `json:"torchwood_witness_seed"`
	TorchwoodCosignKey  string   `json:"torchwood_cosign_seed"`
	Inclusion           struct {
		Leaf  string   `json:"leaf"`
		Index uint64   `json:"index"`
		Size  uint64   `json:"size"`
		Proof []string `json:"proof"`
	} `json:"inclusion"`
	Consistency struct {
		Old   string   `json:"old_checkpoint"`
		New   string   `json:"new_checkpoint"`
		Proof []string `json:"proof"`
	} `json:"consistency"`
	TilesPrefix string `json:"tiles_prefix"`
	TilesLeaves []struct {
		Index int64  `json:"index"`
		Leaf  string `json:"leaf"`
	} `json:"tiles_leaves"`
}

// tiles checks a tiled log (c2sp.org/tlog-tiles) with torchwood's tile fetcher and the Go
// sumdb tlog package: the checkpoint it serves, the tree hash recomputed from its tiles, and
// inclusion proofs computed from its tiles.
func tiles(in input, logV note.Verifier, witnesses []note.Verifier) {
	ctx := context.Background()
	tf, err := torchwood.NewTileFetcher(in.TilesPrefix)
	check(err, "torchwood.NewTileFetcher")
	text, err := tf.ReadEndpoint(ctx, "checkpoint")
	check(err, "fetch checkpoint")
	cp, _, _, err := log.ParseCheckpoint(text, in.Origin, logV, witnesses...)
	check(err, "formats log.ParseCheckpoint of the served checkpoint")
	var root tlog.Hash
	copy(root[:], cp.Hash)
	tree := tlog.Tree{N: int64(cp.Size), Hash: root}
	hr := torchwood.TileHashReaderWithContext(ctx, tree, tf)
	th, err := tlog.TreeHash(tree.N, hr)
	check(err, "tlog.TreeHash from tiles")
	if th != tree.Hash {
		check(fmt.Errorf("tiles hash to %v, checkpoint says %v", th, tree.Hash), "tree hash")
	}
	fmt.Printf("ok torchwood read tiles of tree %d matching its checkpoint\n", tree.N)
	for _, l := range in.TilesLeaves {
		leaf, err := base64.StdEncoding.DecodeString(l.Leaf)
		check(err, "leaf")
		p, err := tlog.ProveRecord(tree.N, l.Index, hr)
		check(err, "tlog.ProveRecord from tiles")
		check(tlog.CheckRecord(p, tree.N, tree.Hash, l.Index, tlog.RecordHash(leaf)), "tlog.CheckRecord")
		fmt.Printf("ok torchwood proves leaf %d from tiles\n", l.Index)
	}
}

func check(err error, what string) {
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAILED %s: %v\n", what, err)
		os.Exit(1)
	}
}

func hashes(in []string) [][]byte {
	out := make([][]byte, len(in))
	for i, s := range in {
		h, err := base64.StdEncoding.DecodeString(s)
		check(err, "proof hash")
		out[i] = h
	}
	return out
}

func seed(b64 string) ed25519.PrivateKey {
	raw, err := base64.StdEncoding.DecodeString(b64)
	check(err, "seed")
	return ed25519.NewKeyFromSeed(raw)
}

// parse verifies the log's signature with formats and returns the checkpoint and the note.
func parse(text string, origin string, logV note.Verifier, others ...note.Verifier) (*log.Checkpoint, *note.Note) {
	cp, _, n, err := log.ParseCheckpoint([]byte(text), origin, logV, others...)
	check(err, "formats log.ParseCheckpoint")
	tw, err := torchwood.ParseCheckpoint(n.Text)
	check(err, "torchwood.ParseCheckpoint")
	if tw.Origin != cp.Origin || uint64(tw.N) != cp.Size || string(tw.Hash[:]) != string(cp.Hash) {
		check(fmt.Errorf("torchwood read %s/%d, formats %s/%d", tw.Origin, tw.N, cp.Origin, cp.Size), "parsers agree")
	}
	if tw.String() != n.Text {
		check(fmt.Errorf("torchwood re-encodes the body differently"), "canonical body")
	}
	return cp, n
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: casebus-interop INPUT.json")
		os.Exit(2)
	}
	raw, err := os.ReadFile(os.Args[1])
	check(err, "read input")
	var in input
	check(json.Unmarshal(raw, &in), "parse input")

	logV, err := fnote.NewVerifier(in.LogVKey)
	check(err, "log vkey")
	var witnesses []note.Verifier
	for _, vk := range in.WitnessVKeys {
		if !strings.Contains(vk, "+") {
			check(fmt.Errorf("%q", vk), "witness vkey")
		}
		v, err := fnote.NewVerifierForCosignatureV1(vk)
		check(err, "witness vkey")
		witnesses = append(witnesses, v)
	}

	if in.TilesPrefix != "" {
		tiles(in, logV, witnesses)
		return
	}

	cp, n := parse(in.Checkpoint, in.Origin, logV, witnesses...)
	fmt.Printf("ok checkpoint %s size %d signed by %s\n", cp.Origin, cp.Size, logV.Name())
	for _, w := range witnesses {
		found := false
		for _, s := range n.Sigs {
			if s.Name == w.Name() && s.Hash == w.KeyHash() {
				t, err := torchwood.CosignatureTimestamp(s)
				check(err, "torchwood.CosignatureTimestamp")
				fmt.Printf("ok cosigned by %s at %d\n", w.Name(), t)
				found = true
			}
		}
		if !found {
			check(fmt.Errorf("no valid cosignature by %s", w.Name()), "cosignature")
		}
	}

	if in.TorchwoodWitnessKey != "" {
		s, err := torchwood.NewCosignatureSigner(in.TorchwoodWitness, seed(in.TorchwoodWitnessKey))
		check(err, "torchwood.NewCosignatureSigner")
		tv := s.Verifier()
		opened, err := note.Open([]byte(in.Checkpoint), note.VerifierList(logV, tv))
		check(err, "note.Open with torchwood's CosignatureVerifier")
		ok := false
		for _, sig := range opened.Sigs {
			ok = ok || (sig.Name == tv.Name() && sig.Hash == tv.KeyHash())
		}
		if !ok {
			check(fmt.Errorf("no cosignature by %s", tv.Name()), "torchwood CosignatureVerifier")
		}
		fmt.Printf("ok torchwood verifies the cosignature by %s (%s)\n", tv.Name(), tv.String())
	}

	if in.TorchwoodCosignKey != "" {
		s, err := torchwood.NewCosignatureSigner(in.TorchwoodWitness, seed(in.TorchwoodCosignKey))
		check(err, "torchwood.NewCosignatureSigner")
		signed, err := note.Sign(&note.Note{Text: n.Text}, s)
		check(err, "note.Sign with torchwood's CosignatureSigner")
		lines := strings.Split(strings.TrimSuffix(string(signed), "\n"), "\n")
		fmt.Printf("cosignature %s\n", lines[len(lines)-1])
		fmt.Printf("vkey %s\n", s.Verifier().String())
	}

	leaf, err := base64.StdEncoding.DecodeString(in.Inclusion.Leaf)
	check(err, "leaf")
	h := rfc6962.DefaultHasher
	check(proof.VerifyInclusion(h, in.Inclusion.Index, in.Inclusion.Size, h.HashLeaf(leaf),
		hashes(in.Inclusion.Proof), cp.Hash), "merkle proof.VerifyInclusion")
	if in.Inclusion.Size != cp.Size {
		check(fmt.Errorf("inclusion size %d, checkpoint %d", in.Inclusion.Size, cp.Size), "inclusion")
	}
	fmt.Printf("ok leaf %d included in tree of size %d\n", in.Inclusion.Index, in.Inclusion.Size)

	older, _ := parse(in.Consistency.Old, in.Origin, logV)
	newer, _ := parse(in.Consistency.New, in.Origin, logV)
	check(proof.VerifyConsistency(h, older.Size, newer.Size, hashes(in.Consistency.Proof),
		older.Hash, newer.Hash), "merkle proof.VerifyConsistency")
	fmt.Printf("ok tree of size %d is a prefix of tree of size %d\n", older.Size, newer.Size)
}
