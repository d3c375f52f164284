"""The study's live progress: one line with points done, running, failed, the round of each running point,
elapsed and estimated time.

On a terminal the line is redrawn in place about once a second; otherwise a
line is printed when it changes (at most every 30 seconds for a change of
rounds only). The estimate counts rounds: the rounds finished since the
study started, over the time taken, applied to the rounds left.
"""

import sys
import time

from tf_lottery.study import folder

_QUIET_SECONDS = 30


def _clock(seconds):
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class Progress:
    """Prints the progress line of a study to `stream`."""

    def __init__(self, plan, stream=None):
        self.plan = plan
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty()
        self.started = time.monotonic()
        self.rounds_at_start = self._rounds_done()
        self.last_text, self.last_time = None, 0.0

    def _rounds_done(self):
        return sum(min(folder.current_round(p.directory), p.config.lottery.rounds + 1)
                   for p in self.plan.points)

    def line(self, study, running):
        """The progress text for study.json's entries and the running point indices."""
        counts = {s: len(study.indices(s)) for s in folder.STATES}
        points = {p.index: p for p in self.plan.points}
        total = sum(p.config.lottery.rounds + 1 for p in self.plan.points)
        done = self._rounds_done()
        elapsed = time.monotonic() - self.started
        rate = (done - self.rounds_at_start) / elapsed if elapsed > 0 else 0
        if done >= total:
            left = "all rounds done"
        else:
            left = f"~{_clock((total - done) / rate)} left" if rate > 0 else "estimating time left"
        current = ", ".join(f"#{i} round {folder.current_round(points[i].directory)}/"
                            f"{points[i].config.lottery.rounds}" for i in sorted(running))
        return (f"points {counts['finished']}/{len(self.plan.points)} done, {len(running)} running"
                f"{' (' + current + ')' if current else ''}, {counts['failed']} failed; "
                f"{_clock(elapsed)} elapsed, {left}")

    def update(self, study, running):
        text = self.line(study, running)
        now = time.monotonic()
        if self.tty:
            self.stream.write("\r" + text[:200].ljust(len(self.last_text or "")))
            self.stream.flush()
            self.last_text = text[:200]
            return
        counts = text.split(";")[0].split(" (")[0]
        previous = (self.last_text or "").split(";")[0].split(" (")[0]
        if counts != previous or (text != self.last_text and now - self.last_time > _QUIET_SECONDS):
            print(text, file=self.stream, flush=True)
            self.last_text, self.last_time = text, now

    def close(self):
        if self.tty and self.last_text:
            self.stream.write("\n")
            self.stream.flush()
