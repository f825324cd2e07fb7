"""fdsl.progress: plain lines at a fixed interval when stderr is not a terminal (fake clock)."""

from __future__ import annotations

import logging

from fdsl.progress import Progress, format_duration, progress_interval, progress_line


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_progress_line_by_hand() -> None:
    # 1200 of 10000 in 4 s: 300 img/s, 8800 left -> 29.33 s -> 0:00:29
    assert progress_line("gen", 1200, 10000, 4.0, "img") == \
        "gen: 1,200/10,000 img (12.0%), 300.0 img/s, ETA 0:00:29"
    assert progress_line("", 5, None, 2.0, "it") == "5 it, 2.5 it/s, elapsed 0:00:02"
    assert progress_line("e", 1, 2, 1.0, "it", "loss 0.5") == "e: 1/2 it (50.0%), 1.0 it/s, ETA 0:00:01, loss 0.5"
    assert format_duration(3725) == "1:02:05"
    assert format_duration(float("inf")) == "?"


def test_lines_at_the_interval_only(caplog) -> None:
    clock = FakeClock()
    caplog.set_level(logging.INFO, logger="fdsl.progress")
    with Progress(total=100, desc="build", unit="img", interval=30, clock=clock, terminal=False) as bar:
        for _ in range(10):
            clock.now += 10  # one update every 10 s -> a line every third update
            bar.update(10)
    assert bar.lines == 3
    lines = [r.getMessage() for r in caplog.records if r.name == "fdsl.progress"]
    assert lines[0] == "build: 30/100 img (30.0%), 1.0 img/s, ETA 0:01:10"


def test_disable_and_environment(monkeypatch) -> None:
    clock = FakeClock()
    bar = Progress(total=4, interval=0, clock=clock, terminal=False, disable=True)
    bar.update(4)
    assert bar.lines == 0 and bar.n == 4
    monkeypatch.setenv("FDSL_PROGRESS_INTERVAL", "2.5")
    assert progress_interval() == 2.5
    monkeypatch.setenv("FDSL_PROGRESS_INTERVAL", "soon")
    assert progress_interval() == 30.0
    monkeypatch.setenv("FDSL_PROGRESS_INTERVAL", "0")
    assert [x for x in Progress(range(3), clock=clock, terminal=False)] == [0, 1, 2]
