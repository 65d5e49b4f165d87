"""The ledger: runs and results in SQLite (`ledger`), its migrations and views (`schema`,
`views`), and the fingerprints that say what exactly was run. May import: tiny, machine, core."""
