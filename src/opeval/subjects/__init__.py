"""Subjects: the distributed systems opeval breaks (etcd built in; others by entry point).

A subject is a class implementing :class:`Subject` (and, for the faults that need them,
capability protocols such as :class:`SpaceQuota`; :class:`SubjectBase` has defaults),
registered under a name in the entry-point group ``opeval.subjects``. ``opeval.testing`` has the contract suite every
subject should pass.
"""

from opeval._plugins import Registry
from opeval.subjects._base import SubjectBase
from opeval.subjects._protocol import SharedStore, SpaceQuota, Subject, SubjectFactory
from opeval.subjects._symptoms import member_symptoms
from opeval.subjects.etcd import EtcdClient, EtcdError, EtcdSubject, etcd_bin_dir
from opeval.subjects.ratelimiter import RateLimiterSubject

#: Subjects by name (entry-point group ``opeval.subjects``).
SUBJECTS: Registry[SubjectFactory] = Registry("subject", "opeval.subjects")
SUBJECTS.register("etcd")(EtcdSubject)
SUBJECTS.register("ratelimiter")(RateLimiterSubject)

__all__ = ["SUBJECTS", "EtcdClient", "EtcdError", "EtcdSubject", "RateLimiterSubject", "SharedStore", "SpaceQuota", "Subject", "SubjectBase", "SubjectFactory",
           "etcd_bin_dir", "member_symptoms"]
