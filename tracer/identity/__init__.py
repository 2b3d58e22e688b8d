"""Workload identity: which container, image and pod a cgroup belongs to, from the runtimes.

Resolver is the one facade (observe / lookup / forget / close); the backends (_docker, _oci)
are private. IdentitySink stamps what the Resolver knows onto records on their way out.
"""

from tracer.identity.model import REASONS, ContainerIdentity, Identity, PodIdentity
from tracer.identity.resolver import Resolver, ResolverConfig
from tracer.identity.stamp import IdentitySink

__all__ = ["REASONS", "ContainerIdentity", "Identity", "IdentitySink", "PodIdentity", "Resolver",
           "ResolverConfig"]
