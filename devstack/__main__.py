"""`make dev`: serve the whole API locally, from template.yaml, against in-process AWS.

Settings are environment variables, listed in the README (AGENTPLANE_HTTP_PORT, AGENTPLANE_WS_PORT,
AGENTPLANE_HOST, AGENTPLANE_STRIPE_PORT, AGENTPLANE_DATA_DIR, AGENTPLANE_SAVE_INTERVAL, AGENTPLANE_LOG_LEVEL), plus
AGENTPLANE_TEMPLATE (template.yaml) for tests; STRIPE_API_KEY and STRIPE_WEBHOOK_SECRET
for a real Stripe instead of the local stand-in.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from types import FrameType


def main() -> int:
    logging.basicConfig(
        level=os.environ.get("AGENTPLANE_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    for noisy in ("botocore", "boto3", "urllib3", "websockets", "moto"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    from devstack.stack import LocalStack, PortTaken, Settings

    stopping = threading.Event()
    first_signal_at: list[float] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        # A second Ctrl-C a moment later forces the exit; one signal delivered twice (to the
        # process and its group, as `timeout` does) does not.
        if first_signal_at and time.monotonic() - first_signal_at[0] > 1.0:
            os._exit(130)
        if not first_signal_at:
            first_signal_at.append(time.monotonic())
        stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    stack = LocalStack(Settings.from_environment())
    try:
        stack.start()
    except PortTaken as exc:
        print(f"make dev: {exc}", file=sys.stderr, flush=True)
        stack.stop()
        return 1
    except OSError as exc:
        logging.getLogger("devstack").error("could not start: %s", exc)
        stack.stop()
        return 1
    print(stack.banner(), flush=True)

    while not stopping.wait(0.5):
        pass
    print("\nstopping: saving data…", flush=True)
    stack.stop()
    print("stopped.", flush=True)
    sys.stdout.flush()
    sys.stderr.flush()
    if any(t.is_alive() and not t.daemon and t is not threading.main_thread() for t in threading.enumerate()):
        os._exit(0)  # an execution still sleeping inside moto must not hold the exit
    return 0


if __name__ == "__main__":
    sys.exit(main())
