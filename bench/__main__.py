"""`make bench`: `python -m bench [coldstart|dynamo|soak|crash]` (all by default). Exits 1 when a
figure misses its target."""

from __future__ import annotations

import logging
import sys


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.ERROR)
    parts = argv or ["coldstart", "dynamo", "soak", "crash"]
    met = True
    if "coldstart" in parts:
        from bench import coldstart

        met = coldstart.report() and met
    if "dynamo" in parts:
        from devstack import aws

        aws.set_offline_environment()
        from bench import dynamo

        met = dynamo.report() and met
    if "soak" in parts:
        from bench import soak

        met = soak.report() and met
    if "crash" in parts:
        from bench import crash

        met = crash.report() and met
    print("all targets met" if met else "some figures miss their targets (marked OVER, MISSED or SERVER ERROR)")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
