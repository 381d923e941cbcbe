"""`python -m rehabgen`: the same command line as `rehabgen`."""

from rehabgen.cli import main

main()
