package plugin

import "github.com/spf13/cobra"

func newStatusCommand(o *Options) *cobra.Command { return &cobra.Command{Use: "status"} }
