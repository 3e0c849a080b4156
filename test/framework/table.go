package framework

import (
	"regexp"
	"strings"
)

var headerRE = regexp.MustCompile(`\S+(?: \S+)*`)

// ParseTable parses kubectl's table output into one map per row, keyed by column header, using
// the header's column positions (so empty cells come back as ""). Headers may contain single
// spaces ("LAST BACKUP"); columns are separated by at least two spaces.
func ParseTable(out string) []map[string]string {
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) == 0 {
		return nil
	}
	locs := headerRE.FindAllStringIndex(lines[0], -1)
	var rows []map[string]string
	for _, line := range lines[1:] {
		row := map[string]string{}
		for i, loc := range locs {
			end := len(line)
			if i+1 < len(locs) {
				end = min(locs[i+1][0], len(line))
			}
			cell := ""
			if loc[0] < len(line) {
				cell = strings.TrimSpace(line[loc[0]:end])
			}
			row[lines[0][loc[0]:loc[1]]] = cell
		}
		rows = append(rows, row)
	}
	return rows
}
