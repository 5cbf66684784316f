"""The exit waits for inference in flight in a loading thread, and none starts after."""

import threading
import time

from mimir_mcp.background import _ExitGuard


def test_exit_waits_for_inference_in_flight_and_refuses_new_work():
    guard = _ExitGuard()
    inside = threading.Event()
    finished: list[float] = []

    def work() -> None:
        with guard.running() as allowed:
            assert allowed
            inside.set()
            time.sleep(0.3)
            finished.append(time.monotonic())

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    assert inside.wait(5)
    guard.exit(timeout=5)
    returned = time.monotonic()
    assert finished and finished[0] <= returned  # the exit returned only after the work ended
    with guard.running() as allowed:
        assert allowed is False
    guard.exit(timeout=0.1)  # nothing in flight: returns at once, and again


def test_exit_gives_up_after_its_timeout():
    guard = _ExitGuard()
    release = threading.Event()

    def stuck() -> None:
        with guard.running():
            release.wait(5)

    thread = threading.Thread(target=stuck, daemon=True)
    thread.start()
    time.sleep(0.05)
    started = time.monotonic()
    guard.exit(timeout=0.2)
    assert 0.15 <= time.monotonic() - started < 2
    release.set()
    thread.join(5)
