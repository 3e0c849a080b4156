package snapshot

import (
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

var ignoreSmithy = cmpopts.IgnoreUnexported(types.LifecycleRule{}, types.LifecycleRuleFilter{},
	types.LifecycleExpiration{}, types.AbortIncompleteMultipartUpload{}, types.Transition{})

func otherRule(id, prefix string, days int32) types.LifecycleRule {
	return types.LifecycleRule{
		ID:         aws.String(id),
		Status:     types.ExpirationStatusEnabled,
		Filter:     &types.LifecycleRuleFilter{Prefix: aws.String(prefix)},
		Expiration: &types.LifecycleExpiration{Days: aws.Int32(days)},
	}
}

func TestLifecycleRule(t *testing.T) {
	tests := []struct {
		name       string
		loc        S3Location
		wantPrefix string
	}{
		{"no prefix", S3Location{Bucket: "b"}, "prod/"},
		{"prefix", S3Location{Bucket: "b", Prefix: "tenants/eu"}, "tenants/eu/prod/"},
		{"prefix with slashes", S3Location{Bucket: "b", Prefix: "/tenants/"}, "tenants/prod/"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := types.LifecycleRule{
				ID:                             aws.String("kdc-etcd-backup-prod"),
				Status:                         types.ExpirationStatusEnabled,
				Filter:                         &types.LifecycleRuleFilter{Prefix: aws.String(tt.wantPrefix)},
				Expiration:                     &types.LifecycleExpiration{Days: aws.Int32(7)},
				AbortIncompleteMultipartUpload: &types.AbortIncompleteMultipartUpload{DaysAfterInitiation: aws.Int32(1)},
			}
			if diff := cmp.Diff(want, LifecycleRule(tt.loc, "prod", 7), ignoreSmithy); diff != "" {
				t.Errorf("LifecycleRule() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestMergeLifecycleRules(t *testing.T) {
	loc := S3Location{Bucket: "b"}
	want7 := LifecycleRule(loc, "prod", 7)
	want30 := LifecycleRule(loc, "prod", 30)
	logs := otherRule("logs", "logs/", 3)
	other := LifecycleRule(loc, "dev", 14)
	noAbort7 := want7
	noAbort7.AbortIncompleteMultipartUpload = nil
	abort5 := want7
	abort5.AbortIncompleteMultipartUpload = &types.AbortIncompleteMultipartUpload{DaysAfterInitiation: aws.Int32(5)}
	transition := otherRule("archive", "archive/", 90)
	transition.Transitions = []types.Transition{{Days: aws.Int32(30), StorageClass: types.TransitionStorageClassGlacier}}

	tests := []struct {
		name        string
		existing    []types.LifecycleRule
		want        types.LifecycleRule
		wantMerged  []types.LifecycleRule
		wantChanged bool
	}{
		{"empty bucket", nil, want7, []types.LifecycleRule{want7}, true},
		{"keeps foreign rules and appends", []types.LifecycleRule{logs, transition}, want7, []types.LifecycleRule{logs, transition, want7}, true},
		{"keeps another cluster's rule", []types.LifecycleRule{other}, want7, []types.LifecycleRule{other, want7}, true},
		{"already as wanted", []types.LifecycleRule{logs, want7, other}, want7, []types.LifecycleRule{logs, want7, other}, false},
		{"updates days in place", []types.LifecycleRule{logs, want7, other}, want30, []types.LifecycleRule{logs, want30, other}, true},
		{"drops a duplicate of our ID", []types.LifecycleRule{want7, logs, want7}, want7, []types.LifecycleRule{want7, logs}, true},
		{"replaces a disabled rule", []types.LifecycleRule{func() types.LifecycleRule { r := want7; r.Status = types.ExpirationStatusDisabled; return r }()}, want7, []types.LifecycleRule{want7}, true},
		{"accepts a rule whose abort the backend dropped", []types.LifecycleRule{noAbort7}, want7, []types.LifecycleRule{want7}, false},
		{"replaces a rule with another abort", []types.LifecycleRule{abort5}, want7, []types.LifecycleRule{want7}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			merged, changed := MergeLifecycleRules(tt.existing, tt.want)
			if diff := cmp.Diff(tt.wantMerged, merged, ignoreSmithy); diff != "" {
				t.Errorf("merged rules mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantChanged, changed); diff != "" {
				t.Errorf("changed mismatch (-want +got):\n%s", diff)
			}
		})
	}
}
