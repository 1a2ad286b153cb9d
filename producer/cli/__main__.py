"""`python -m producer.cli`: the srdb command."""

from producer.cli import run

run()
