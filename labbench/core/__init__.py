"""The base every area stands on: flags and exits (`cli`), errors, paths as the user typed them,
every default (`settings`), number formatting, atomic file writes, and the statistics (CIs,
pass@k, paired tests, Student's t). Imports only the standard library and third-party packages."""
