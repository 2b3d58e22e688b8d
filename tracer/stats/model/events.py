"""cAdvisor's container events and the request that selects them."""

from __future__ import annotations

from dataclasses import dataclass

from tracer.stats.model._json import json_field, json_time

# --- events ----------------------------------------------------------------------------------

EVENT_TYPES = ("oom", "oomKill", "containerCreation", "containerDeletion")


@dataclass(slots=True)
class OomKillEventData:
    pid: int = json_field("pid")
    process_name: str = json_field("process_name", "")
    # cAdvisor master (lib/model): the kernel's constraint, "CONSTRAINT_MEMCG" for a memcg OOM;
    # "" for any other, whose kernel line its oomparser does not match. Not in v0.56.2.
    constraint: str = json_field("constraint", "")


@dataclass(slots=True)
class ContainerDeletionEventData:
    exit_code: int = json_field("exit_code")  # -1: not known, as cAdvisor


@dataclass(slots=True)
class EventData:
    oom: OomKillEventData | None = json_field("oom", omitempty=True, pointer=True)
    container_deletion: ContainerDeletionEventData | None = json_field("container_deletion", omitempty=True,
                                                                       pointer=True)


@dataclass(slots=True)
class Event:
    container_name: str = json_field("container_name", "")
    timestamp: float = json_time("timestamp")
    event_type: str = json_field("event_type", "")
    event_data: EventData = json_field("event_data", omitempty=True, factory=EventData)


@dataclass(frozen=True, slots=True)
class EventRequest:  # events.Request
    start_time: float | None = None
    end_time: float | None = None
    event_types: frozenset[str] = frozenset(EVENT_TYPES)
    max_events: int = 10  # the most recent N; <= 0: all
    container_name: str = "/"
    include_subcontainers: bool = False
