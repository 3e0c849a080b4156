package plugin

import "github.com/spf13/cobra"

func newRestoreCommand(o *Options) *cobra.Command { return &cobra.Command{Use: "restore"} }
