"""One clean record per client: merge and unmerge, duplicates, stages, search, import and export."""
