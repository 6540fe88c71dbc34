"""`python -m roofline ...` runs the roofline command."""

from roofline.cli import main

main(prog_name="roofline")
