"""The ledger: runs and results in SQLite (`ledger`), its migrations and views (`schema`,
`views`), the fingerprints that say what exactly was run, and continuing a stopped run's row
(`resumes`). May import: tiny, machine, core."""
