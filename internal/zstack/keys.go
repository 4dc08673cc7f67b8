package zstack

import (
	"reflect"
	"strings"
	"sync"
)

// The keys a CreateVmFromVmBackup body may carry. ZStack maps params onto its API message and
// ignores keys the message does not have; vmrestore does the same, except for near-misses of
// real names (see NearMiss), which are almost always typos that would silently change the VM.

var (
	keysOnce  sync.Once
	topKeys   []string
	paramKeys []string
)

func buildKeys() {
	topKeys = JSONNames(reflect.TypeOf(CreateVmFromVmBackupRequest{}))
	paramKeys = append(JSONNames(reflect.TypeOf(CreateVmFromVmBackupParams{})), SDKOnlyParams...)
}

// CreateVmFromVmBackupKeys returns the keys the body's top level and its params may carry.
func CreateVmFromVmBackupKeys() (top, params []string) {
	keysOnce.Do(buildKeys)
	return topKeys, paramKeys
}

// JSONNames lists the JSON names of a struct type's fields (fields tagged "-" left out).
func JSONNames(t reflect.Type) []string {
	var out []string
	for i := 0; i < t.NumField(); i++ {
		name := strings.Split(t.Field(i).Tag.Get("json"), ",")[0]
		if name != "" && name != "-" {
			out = append(out, name)
		}
	}
	return out
}

// NearMiss returns the known name that key is a near-miss of: the same name in another
// case, or one at most two edits away (one for names shorter than eight characters), where
// an edit inserts, deletes or replaces a character or swaps two neighbours. Keys that are
// known names themselves are never near-misses.
func NearMiss(key string, known []string) (string, bool) {
	for _, k := range known {
		if k == key {
			return "", false
		}
	}
	best, bestDist := "", 3
	for _, k := range known {
		if strings.EqualFold(k, key) {
			return k, true
		}
		limit := 2
		if len(k) < 8 {
			limit = 1
		}
		if d := editDistance(strings.ToLower(key), strings.ToLower(k), limit); d <= limit && d < bestDist {
			best, bestDist = k, d
		}
	}
	return best, best != ""
}

// editDistance is the optimal-string-alignment distance between a and b (Levenshtein plus
// adjacent swaps), or limit+1 as soon as it exceeds limit.
func editDistance(a, b string, limit int) int {
	ra, rb := []rune(a), []rune(b)
	if d := len(ra) - len(rb); d > limit || -d > limit {
		return limit + 1
	}
	prev2 := make([]int, len(rb)+1)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		rowMin := cur[0]
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
			rowMin = min(rowMin, cur[j])
		}
		if rowMin > limit {
			return limit + 1
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(rb)]
}
