package jobspec

import (
	"flag"
	"fmt"
	"strconv"

	"kube-dc.com/etcd-backup/api/v1alpha1"
)

// Two steps per member, so nothing is swapped unless every member's restore succeeded (docs/restore.md, "Multi-member datastores").

// The states a restore, swap or rollback reports in Result.State.
const (
	// StateStaged: restore --swap=false staged the restore in Result.StagedDir; nothing swapped.
	StateStaged = "staged"
	// StateSwapped: the restored data is the data directory now (restore, or swap).
	StateSwapped = "swapped"
	// StateAlreadySwapped: swap found this staged restore already swapped in (a retried swap).
	StateAlreadySwapped = "alreadySwapped"
	// StateRolledBack: rollback swapped the data from before the restore back.
	StateRolledBack = "rolledBack"
	// StateAlreadyRolledBack: rollback --if-swapped found that swap already rolled back.
	StateAlreadyRolledBack = "alreadyRolledBack"
	// StateDiscarded: rollback --if-swapped removed a staged restore that was never swapped in;
	// the data directory was not touched.
	StateDiscarded = "discarded"
	// StateNotSwapped: rollback --if-swapped found no swap to undo and changed nothing.
	StateNotSwapped = "notSwapped"
)

// stageArgs are the restore's multi-member flags, when set.
func (r Restore) stageArgs() []string {
	var args []string
	if r.RestoredRevision != 0 {
		args = append(args, "--restored-revision="+strconv.FormatInt(r.RestoredRevision, 10))
	}
	if r.StageOnly {
		args = append(args, "--swap=false")
	}
	return args
}

// bindStage registers the restore's multi-member flags.
func (r *Restore) bindStage(fs *flag.FlagSet) {
	fs.Var(swapValue{&r.StageOnly}, "swap", "swap the restore into the data directory; false stops once it is staged in <data-dir>.staged, for `swap` (multi-member restores)")
	fs.Int64Var(&r.RestoredRevision, "restored-revision", 0, "restore at exactly this revision (the same on every member of a multi-member restore); refused when below what the revision rule requires of this member; 0: the rule decides")
}

// swapValue is --swap, stored inverted as StageOnly so that the zero Restore swaps.
type swapValue struct{ stageOnly *bool }

func (v swapValue) String() string {
	if v.stageOnly == nil {
		return "true"
	}
	return strconv.FormatBool(!*v.stageOnly)
}

func (v swapValue) Set(s string) error {
	b, err := strconv.ParseBool(s)
	if err != nil {
		return err
	}
	*v.stageOnly = !b
	return nil
}

func (v swapValue) IsBoolFlag() bool { return true }

// Swap are the arguments of `kdc-etcd-backup swap`: swap the restore staged by
// `restore --swap=false` into the data directory, keeping the replaced one as <data-dir>.previous.
type Swap struct {
	// DataDir is etcd's data directory; the staged restore is DataDir + ".staged".
	DataDir string
	// RestoredRevision, when set, must be the staged restore's revision (the one every member
	// agreed on), or nothing is swapped.
	RestoredRevision int64
}

// Args are the container args of a swap Job.
func (s Swap) Args() []string {
	args := []string{string(CommandSwap), "--data-dir=" + s.DataDir}
	if s.RestoredRevision != 0 {
		args = append(args, "--restored-revision="+strconv.FormatInt(s.RestoredRevision, 10))
	}
	return args
}

// Bind registers the swap flags on fs.
func (s *Swap) Bind(fs *flag.FlagSet) {
	fs.StringVar(&s.DataDir, "data-dir", v1alpha1.EtcdDataDir, "etcd data directory; the staged restore is <data-dir>.staged")
	fs.Int64Var(&s.RestoredRevision, "restored-revision", 0, "swap only a staged restore at exactly this revision (0: any)")
}

// AgreeRevision is the revision every member of a multi-member restore is restored at, from the
// results of the members' staged restores (`restore --swap=false`, all of the same snapshot):
// the highest restoredRevision, which meets every member's own revision rule. restage are the
// indexes of the members staged below it: stage them again with RestoredRevision = revision
// (their rule is met too, since it is the highest), then swap every member with it.
func AgreeRevision(staged []Result) (revision int64, restage []int, err error) {
	if len(staged) == 0 {
		return 0, nil, fmt.Errorf("no staged restore")
	}
	first := staged[0]
	for i, r := range staged {
		switch {
		case r.Failed():
			return 0, nil, fmt.Errorf("member %d's staged restore failed (%s): %s", i, r.Reason, r.Error)
		case r.State != StateStaged:
			return 0, nil, fmt.Errorf("member %d's restore is %q, not %q: every member must be staged with --swap=false", i, r.State, StateStaged)
		case r.SHA256 != first.SHA256 || r.Revision != first.Revision:
			return 0, nil, fmt.Errorf("member %d staged snapshot sha256 %s at revision %d, member 0 sha256 %s at revision %d: every member must restore the same snapshot", i, r.SHA256, r.Revision, first.SHA256, first.Revision)
		}
		revision = max(revision, r.RestoredRevision)
	}
	for i, r := range staged {
		if r.RestoredRevision != revision {
			restage = append(restage, i)
		}
	}
	return revision, restage, nil
}
