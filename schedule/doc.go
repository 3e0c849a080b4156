// Package schedule holds what the backup controller and `kubectl kdc status` both judge a
// backup schedule by: when a backup is stale (docs/backup.md, "BackupStale").
package schedule
