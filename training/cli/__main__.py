"""`python -m training.cli`: the `reco` command (how `reco demo` starts the service)."""

from training.cli import main

main()
