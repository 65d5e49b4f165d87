"""What a person reads: the journal and its tables, one run's entry, the HTML report, plots,
the sweep report, and the recording context that writes them however a run ends.
May import: eval and everything below it (not data, train or sweep)."""
