"""The application on top of everything: the CLI, the demo, status and its health rules, the
console, plots, reports, history, provenance and the benchmark command. Nothing imports it
but `driftctl.__main__`."""
