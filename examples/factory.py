"""An example factory on the c2m factory SDK: accept every trigger it has room for, start it at once,
and report it completed after the factory's lead time (scaled, so a demo does not take 48 hours).

    python examples/factory.py --factory f-gz-dress --seconds-per-hour 1

Capacity rule (deliberately simple): the units open at once may not exceed what the factory makes
in one lead time, capacity_units_per_day x lead_time_hours / 24 (both from topics.yaml). A start or
reorder that does not fit is rejected with the reason; a revise replaces the job's units if the new
total fits; a cancel stops a job that has not completed. Ctrl-C stops it; every trigger it has
answered stays committed, any other is delivered again on the next start.
"""

from __future__ import annotations

import argparse
import heapq
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from streams.config import Settings
from streams.errors import UserError
from streams.factory_client import FactoryClient
from streams.records import TriggerRecord
from streams.topology import load


@dataclass
class Job:
    trigger: TriggerRecord  # the revision being made
    done_at: float  # time.monotonic() when the batch is complete


class ExampleFactory:
    """The decisions of the example, kept apart from the loop so they read (and test) on their own."""

    def __init__(self, client: FactoryClient, capacity_per_day: int, lead_time_hours: int,
                 seconds_per_hour: float) -> None:
        self.client = client
        self.limit = capacity_per_day * lead_time_hours // 24
        self.lead_seconds = lead_time_hours * seconds_per_hour
        self.jobs: dict[str, Job] = {}
        self.schedule: list[tuple[float, str, int]] = []  # (done_at, trigger_id, revision)

    def open_units(self, excluding: str | None = None) -> int:
        return sum(job.trigger.units for tid, job in self.jobs.items() if tid != excluding)

    def handle(self, trig: TriggerRecord) -> None:
        what = f"{trig.trigger_id} r{trig.revision} {trig.action} {trig.units} units of {'/'.join(trig.niche.values())}"
        if trig.action == "cancel":
            job = self.jobs.pop(trig.trigger_id, None)
            self.client.accept(trig)
            say(f"cancelled {what}" + ("" if job else " (nothing open)"))
            return
        open_units = self.open_units(excluding=trig.trigger_id)
        if open_units + trig.units > self.limit:
            reason = f"over capacity: {open_units} units open + {trig.units} > {self.limit} per lead time"
            self.client.reject(trig, reason)
            say(f"rejected {what}: {reason}")
            return
        self.client.accept(trig)
        self.client.in_production(trig)
        previous = self.jobs.get(trig.trigger_id)
        done_at = previous.done_at if previous else time.monotonic() + self.lead_seconds
        self.jobs[trig.trigger_id] = Job(trig, done_at)
        heapq.heappush(self.schedule, (done_at, trig.trigger_id, trig.revision))
        say(f"accepted {what}; done in {done_at - time.monotonic():.0f}s "
            f"({self.open_units()}/{self.limit} units open)")

    def finish_due(self) -> None:
        now = time.monotonic()
        while self.schedule and self.schedule[0][0] <= now:
            _, trigger_id, revision = heapq.heappop(self.schedule)
            job = self.jobs.get(trigger_id)
            if job is None or job.trigger.revision != revision:
                continue  # cancelled, or superseded by a later revision with its own entry
            del self.jobs[trigger_id]
            self.client.complete(job.trigger)
            say(f"completed {trigger_id} r{revision}: {job.trigger.units} units")


def say(text: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {text}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="An example factory: accept, make, complete.")
    parser.add_argument("--factory", default="f-gz-dress", help="factory id from topics.yaml")
    parser.add_argument("--seconds-per-hour", type=float, default=1.0,
                        help="real seconds per hour of lead time (default 1: a 48 h lead time takes 48 s)")
    parser.add_argument("--topics", type=Path, default=None, help="topics.yaml (default C2M_TOPICS_FILE)")
    parser.add_argument("--idle-exit", type=float, default=None, metavar="S",
                        help="stop after S seconds with no trigger and no open job")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    settings = Settings.from_env()
    try:
        factory = load(args.topics or settings.topics_file).factory(args.factory)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with FactoryClient(factory.id, settings) as client:
        plant = ExampleFactory(client, factory.capacity_units_per_day, factory.lead_time_hours,
                               args.seconds_per_hour)
        client.capacity(factory.capacity_units_per_day)
        say(f"factory {factory.id} on {client.topic}: {factory.capacity_units_per_day} units/day, "
            f"lead time {factory.lead_time_hours} h = {plant.lead_seconds:.0f} s here")
        idle_since = time.monotonic()
        try:
            while True:
                trig = client.poll(0.5)
                plant.finish_due()
                if trig is not None:
                    plant.handle(trig)
                    idle_since = time.monotonic()
                elif plant.jobs:
                    idle_since = time.monotonic()
                elif args.idle_exit is not None and time.monotonic() - idle_since >= args.idle_exit:
                    say("idle: stopping")
                    return 0
        except KeyboardInterrupt:
            # a trigger interrupted mid-answer is not committed: it comes again on the next start
            client.close(commit=False)
            say(f"stopped with {len(plant.jobs)} job(s) open")
    return 0


if __name__ == "__main__":
    sys.exit(main())
