"""Subjects: the distributed systems opeval breaks (etcd built in; others by entry point).

A subject is a class implementing :class:`Subject` (and, for the faults that need them,
capability protocols such as :class:`SpaceQuota`; :class:`SubjectBase` has defaults),
registered under a name in the entry-point group ``opeval.subjects``. ``opeval.testing`` has the contract suite every
subject should pass.
"""

from opeval._plugins import Registry
from opeval.errors import OpevalError
from opeval.workload import Words
from opeval.subjects._base import SubjectBase
from opeval.subjects._protocol import SharedStore, SpaceQuota, Subject, SubjectFactory
from opeval.subjects._symptoms import member_symptoms
from opeval.subjects.etcd import EtcdClient, EtcdError, EtcdSubject, etcd_bin_dir
from opeval.subjects.ratelimiter import RateLimiterSubject

#: Subjects by name (entry-point group ``opeval.subjects``).
SUBJECTS: Registry[SubjectFactory] = Registry("subject", "opeval.subjects")
SUBJECTS.register("etcd")(EtcdSubject)
SUBJECTS.register("ratelimiter")(RateLimiterSubject)


def words_for(subject: str) -> Words:
    """The screen words of the subject called ``subject`` (the defaults if it is not installed)."""
    try:
        factory = SUBJECTS.get(subject)
    except OpevalError:
        return Words()
    return getattr(factory, "words", None) or Words()

__all__ = ["SUBJECTS", "EtcdClient", "EtcdError", "EtcdSubject", "RateLimiterSubject", "SharedStore", "SpaceQuota", "Subject", "SubjectBase", "SubjectFactory",
           "etcd_bin_dir", "member_symptoms", "words_for"]
