package jobspec

// etcd's own defaults for a single member, used when neither a flag nor its ETCD_* variable
// sets them.
const (
	DefaultMemberName   = "default"
	DefaultPeerURL      = "http://localhost:2380"
	DefaultClusterToken = "etcd-cluster"
	// DataDirSuffix: etcd's default data directory is <name>.etcd.
	DataDirSuffix = ".etcd"
)

// Member is how etcd runs the member a restore writes: etcdutl records the name, peer URLs,
// initial cluster and cluster token in the restored membership, and etcd refuses to start when
// they differ from its own flags.
type Member struct {
	Name string `json:"name"`
	// PeerURLs are --initial-advertise-peer-urls.
	PeerURLs []string `json:"peerURLs"`
	// InitialCluster is --initial-cluster; the subcommand defaults it to <name>=<first peer URL>.
	InitialCluster string `json:"initialCluster"`
	// ClusterToken is --initial-cluster-token.
	ClusterToken string `json:"clusterToken"`
	// DataDir is etcd's data directory as the Job mounts it.
	DataDir string `json:"dataDir"`
}
