"""The simulated fortnight behind ``casebus demo``: the world, its clock, the flows, the report."""

from bus.sim.clock import SteppedClock
from bus.sim.fortnight import Days, Expected, Fortnight
from bus.sim.report import Pulse, Summary, pulse, summarize
from bus.sim.world import World, running_world

__all__ = [
    "Days",
    "Expected",
    "Fortnight",
    "Pulse",
    "SteppedClock",
    "Summary",
    "World",
    "pulse",
    "running_world",
    "summarize",
]
