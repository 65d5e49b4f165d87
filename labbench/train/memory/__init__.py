"""Memory: the plan that predicts a training's peak from the model's config.json and the data
before anything is loaded (`plan`), its check against this machine or a named one (`check`),
and the watchdog that stops a training above its ceiling (`watch`). May import: record, machine
and core (nothing else of train)."""
